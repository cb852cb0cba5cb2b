package tidelog_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"tidelog"
)

// TestStateDigest: streams holding the same messages under the same sequences and times
// have the same digest, whatever their names, configs and history of storage; any visible
// difference changes it.
func TestStateDigest(t *testing.T) {
	dir := t.TempDir()
	clock := tidelog.NewManualClock(t0)
	defer clock.Close()
	st := must(tidelog.Open(dir, tidelog.WithClock(clock), tidelog.WithManualMaintenance())).of(t)
	defer st.Close()
	a := must(st.CreateStream(tidelog.StreamConfig{Name: "a", AllowMsgTTL: true, Dedup: tidelog.Dedup{Window: time.Hour, MaxIDs: 10}})).of(t)
	b := must(st.CreateStream(tidelog.StreamConfig{Name: "b", AllowMsgTTL: true, BlockSize: 4096, Durability: tidelog.DurabilityNone})).of(t)
	digest := func(s *tidelog.Stream) uint64 { t.Helper(); return must(s.StateDigest()).of(t) }
	same := func(why string) {
		t.Helper()
		if da, db := digest(a), digest(b); da != db {
			t.Fatalf("%s: digests %x and %x differ", why, da, db)
		}
	}
	differ := func(why string) {
		t.Helper()
		if digest(a) == digest(b) {
			t.Fatalf("%s: the digests are equal", why)
		}
	}
	same("two empty streams")
	empty := digest(a)

	msgs := []tidelog.Message{
		{Subject: "k.1", Payload: []byte("one")},
		{Subject: "k.2", Headers: []byte("NATS/1.0\r\nX: y\r\n\r\n"), Payload: []byte("two"), MsgID: "id-2"},
		{Subject: "k.3", Payload: []byte("three"), TTL: time.Minute},
	}
	for _, s := range []*tidelog.Stream{a, b} {
		must(s.AppendBatch(msgs)).of(t)
	}
	same("the same batch at the same time")
	if digest(a) == empty {
		t.Fatal("appends did not change the digest")
	}

	must(a.Append("k.4", []byte("four"))).of(t)
	differ("one more message")
	clock.Advance(time.Second)
	must(b.Append("k.4", []byte("four"))).of(t)
	differ("the same message at another time")
	m := must(b.Load(4)).of(t)
	ok(t, b.Remove(4))
	ok(t, b.AppendRaw(5, must(a.Load(4)).of(t).Time, tidelog.Message{Subject: m.Subject, Payload: m.Payload}))
	differ("the same message under another sequence")
	ok(t, a.Remove(4))
	ok(t, a.AppendRaw(5, m.Time, tidelog.Message{Subject: "k.4", Payload: []byte("four")}))
	differ("a different time")
	ok(t, a.Remove(5))
	ok(t, b.Remove(5))
	same("the same messages after removals")

	// How the messages are stored does not count: the digest survives checkpoints and a
	// reopen (which replays or maps the blocks afresh).
	before := digest(a)
	ok(t, a.Checkpoint())
	must(a.Reclaim()).of(t)
	if digest(a) != before {
		t.Fatal("a checkpoint changed the digest")
	}
	a.Close()
	b.Close()
	ok(t, st.Close())
	st = must(tidelog.Open(dir, tidelog.WithClock(clock), tidelog.WithManualMaintenance())).of(t)
	defer st.Close()
	a = must(st.Stream("a")).of(t)
	defer a.Close()
	if digest(a) != before {
		t.Fatal("a reopen changed the digest")
	}
}

// TestExpireNowAndClockSet: on a manual clock, ExpireNow removes exactly the messages whose
// TTL or max_age is due, leaving a delete marker on every subject it empties (markers expire
// after their own TTL, leaving none), and reports how many went. Setting the clock back does
// not move a stream's times back.
func TestExpireNowAndClockSet(t *testing.T) {
	st, clock := manualStore(t)
	s := createStream(t, st, tidelog.StreamConfig{
		Name: "exp", AllowMsgTTL: true, SubjectDeleteMarkerTTL: 5 * time.Second, MaxAge: time.Hour,
	})
	put := func(subject string, ttl time.Duration) uint64 {
		t.Helper()
		return must(s.AppendMsg(tidelog.Message{Subject: subject, Payload: []byte(subject), TTL: ttl})).of(t).Seq
	}
	short := put("k.short", 5*time.Second)
	// A TTL shorter than the markers' is raised to it (the stream keeps more than one
	// message per subject).
	raised := put("k.raised", 2*time.Second)
	if m := must(s.Load(raised)).of(t); m.TTL != 5*time.Second {
		t.Fatalf("a 2 s TTL reads back as %v, want the markers' 5 s", m.TTL)
	}
	long := put("k.long", 30*time.Second)
	aged := put("k.aged", 0)
	never := put("k.never", tidelog.TTLNever)
	gone := func(seqs ...uint64) {
		t.Helper()
		for _, q := range seqs {
			if _, err := s.Load(q); !errors.Is(err, tidelog.ErrNotFound) {
				t.Fatalf("message %d outlived its time: %v", q, err)
			}
		}
	}
	expire := func(at time.Duration, want uint64) {
		t.Helper()
		clock.Set(t0.Add(at))
		if got := clock.Now(); !got.Equal(t0.Add(at)) {
			t.Fatalf("Set(t0+%v): the clock reads %v", at, got)
		}
		if n := must(s.ExpireNow()).of(t); n != want {
			t.Fatalf("at t0+%v ExpireNow removed %d, want %d", at, n, want)
		}
	}

	expire(4*time.Second, 0)
	expire(6*time.Second, 2)
	gone(short, raised)
	var markers []uint64
	for _, subject := range []string{"k.short", "k.raised"} {
		m := must(s.LoadLast(subject)).of(t)
		if !m.Marker || m.Header("Nats-Marker-Reason") != "MaxAge" || m.TTL != 5*time.Second || !m.Time.Equal(t0.Add(6*time.Second)) {
			t.Fatalf("no delete marker for %s: %+v", subject, m)
		}
		markers = append(markers, m.Seq)
	}
	must(s.Load(long)).of(t)
	// k.long's TTL and both markers' (5 s from t0+6 s).
	expire(31*time.Second, 3)
	gone(long)
	gone(markers...)
	longMarker := must(s.LoadLast("k.long")).of(t)
	// max_age takes k.aged, not the message exempt from age; k.long's marker is due too.
	expire(time.Hour+time.Second, 2)
	gone(aged, longMarker.Seq)
	must(s.Load(never)).of(t)
	var subjects []string
	for _, ss := range must(s.SubjectsState(">")).of(t) {
		subjects = append(subjects, ss.Subject)
	}
	if !slices.Equal(subjects, []string{"k.aged", "k.never"}) {
		t.Fatalf("subjects after expiry: %v, want k.aged's marker and k.never", subjects)
	}

	// The clock set back: a stream's times never go back with it.
	last := must(s.State()).of(t).LastTime
	expire(0, 0)
	a := must(s.Append("k.later", nil)).of(t)
	if a.Time.Before(last) {
		t.Fatalf("an append after the clock went back is dated %v, before %v", a.Time, last)
	}

	clock.Close()
	clock.Set(t0.Add(time.Hour))
	if !clock.Now().IsZero() {
		t.Fatal("a closed clock was set")
	}
}

// TestVerifyAndRecoveryReport damages records on disk. In a sealed block, while the stream
// is open: Verify finds them by checksum, then and after a reopen. In the block being
// written at close: recovery at the next open sets the record aside and reports it lost. And
// a torn tail is cut and counted.
func TestVerifyAndRecoveryReport(t *testing.T) {
	dir := t.TempDir()
	open := func() (*tidelog.Store, *tidelog.Stream) {
		st := must(tidelog.Open(dir, tidelog.WithManualMaintenance())).of(t)
		return st, must(st.Stream("s")).of(t)
	}
	blockFiles := func() []string {
		blocks, _ := filepath.Glob(filepath.Join(dir, "streams", "s", "*.blk"))
		slices.Sort(blocks)
		return blocks
	}
	payload := func(q int) []byte { return bytes.Repeat([]byte{byte(q)}, 64) }
	// damage flips a byte of each message's payload in the block file at path.
	damage := func(path string, seqs ...int) {
		t.Helper()
		data := must(os.ReadFile(path)).of(t)
		f := must(os.OpenFile(path, os.O_RDWR, 0)).of(t)
		defer f.Close()
		for _, q := range seqs {
			at := bytes.Index(data, payload(q))
			if at < 0 {
				t.Fatalf("message %d is not in %s", q, path)
			}
			must(f.WriteAt([]byte{^byte(q)}, int64(at+10))).of(t)
		}
	}
	st := must(tidelog.Open(dir, tidelog.WithManualMaintenance())).of(t)
	s := must(st.CreateStream(tidelog.StreamConfig{Name: "s", BlockSize: 4096})).of(t)
	if r := must(s.RecoveryReport()).of(t); r.UsedCheckpoint || r.TornBytes != 0 || len(r.Lost) != 0 || r.ReplayedRecords != 0 {
		t.Fatalf("a new stream's recovery report: %+v", r)
	}
	for q := 1; q <= 200; q++ {
		must(s.Append("v", payload(q))).of(t)
	}
	ok(t, s.Checkpoint())
	if r := must(s.Verify()).of(t); r.Checked != 200 || len(r.Damaged) != 0 {
		t.Fatalf("Verify of a sound stream: %+v", r)
	}

	// Messages 3, 4 and 7 lie in the first block, sealed and read from its file.
	blocks := blockFiles()
	if len(blocks) < 3 {
		t.Fatalf("%d block files, want several", len(blocks))
	}
	damage(blocks[0], 3, 4, 7)
	sealed := []tidelog.SeqRange{{First: 3, Last: 4}, {First: 7, Last: 7}}
	if r := must(s.Verify()).of(t); r.Checked != 200 || !slices.Equal(r.Damaged, sealed) {
		t.Fatalf("Verify = %+v, want 200 checked and damage %v", r, sealed)
	}
	_, err := s.Load(3)
	wantErr(t, err, tidelog.ErrCorrupt)
	s.Close()
	ok(t, st.Close())

	// Message 199 lies in the last block, which recovery reads again.
	damage(blocks[len(blocks)-1], 199)
	st, s = open()
	rep := must(s.RecoveryReport()).of(t)
	if want := []tidelog.SeqRange{{First: 199, Last: 199}}; !slices.Equal(rep.Lost, want) {
		t.Fatalf("recovery lost %v, want %v (%+v)", rep.Lost, want, rep)
	}
	if !rep.UsedCheckpoint || rep.CheckpointError != "" || rep.TornBytes != 0 || len(rep.DamagedBlocks) != 0 || rep.Duration <= 0 {
		t.Fatalf("recovery report %+v", rep)
	}
	if r := must(s.Verify()).of(t); r.Checked != 199 || !slices.Equal(r.Damaged, sealed) {
		t.Fatalf("after recovery, Verify = %+v, want 199 checked and damage %v", r, sealed)
	}
	if _, err := s.Load(199); !errors.Is(err, tidelog.ErrNotFound) {
		t.Fatalf("the lost message loads: %v", err)
	}
	// Repair removes 3, 4 and 7 and rewrites the first and last blocks; the rest stays.
	rr := must(s.Repair()).of(t)
	if !slices.Equal(rr.Removed, sealed) || len(rr.RewrittenBlocks) != 2 {
		t.Fatalf("Repair = %+v, want %v removed and two blocks rewritten", rr, sealed)
	}
	if r := must(s.Verify()).of(t); r.Checked != 196 || len(r.Damaged) != 0 {
		t.Fatalf("after repair, Verify = %+v", r)
	}
	if m := must(s.Load(8)).of(t); !bytes.Equal(m.Payload, payload(8)) {
		t.Fatalf("message 8 after repair: %v", m.Payload)
	}
	must(s.Append("v", []byte("after"))).of(t)
	ok(t, s.Sync())
	s.Close()
	ok(t, st.Close())

	// Bytes after the last record, as a write torn by a crash leaves them.
	blocks = blockFiles()
	f := must(os.OpenFile(blocks[len(blocks)-1], os.O_WRONLY|os.O_APPEND, 0)).of(t)
	must(f.Write(bytes.Repeat([]byte{0x77}, 37))).of(t)
	ok(t, f.Close())
	st, s = open()
	defer st.Close()
	defer s.Close()
	rep = must(s.RecoveryReport()).of(t)
	if rep.TornBytes != 37 || len(rep.Lost) != 0 {
		t.Fatalf("recovery of a torn tail: %+v", rep)
	}
	if m := must(s.LoadLast("v")).of(t); string(m.Payload) != "after" {
		t.Fatalf("the last message is %q", m.Payload)
	}
}

// TestReadOnlyOpen: a read-only open takes an append and a close, and the next open finds
// none of it; a directory with no store is not found, and not made one.
func TestReadOnlyOpen(t *testing.T) {
	dir := t.TempDir()
	st := must(tidelog.Open(dir, tidelog.WithManualMaintenance())).of(t)
	s := must(st.CreateStream(tidelog.StreamConfig{Name: "ro"})).of(t)
	must(s.Append("a.b", []byte("one"))).of(t)
	s.Close()
	st.Close()

	ro := must(tidelog.Open(dir, tidelog.WithReadOnly(), tidelog.WithManualMaintenance())).of(t)
	s = must(ro.Stream("ro")).of(t)
	if a := must(s.Append("a.b", []byte("two"))).of(t); a.Seq != 2 {
		t.Fatalf("append on the read-only store got %d", a.Seq)
	}
	s.Close()
	ro.Close()

	st = must(tidelog.Open(dir, tidelog.WithManualMaintenance())).of(t)
	defer st.Close()
	s = must(st.Stream("ro")).of(t)
	defer s.Close()
	if n := must(s.State()).of(t).Messages; n != 1 {
		t.Fatalf("after a read-only open the stream holds %d messages, want 1", n)
	}

	none := filepath.Join(t.TempDir(), "none")
	if _, err := tidelog.Open(none, tidelog.WithReadOnly()); !errors.Is(err, tidelog.ErrNotFound) {
		t.Fatalf("read-only open of no store: %v", err)
	}
	if _, err := os.Stat(none); !os.IsNotExist(err) {
		t.Fatalf("a read-only open created %s", none)
	}
}
