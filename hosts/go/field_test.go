package tidelog_test

// The five field failures of shared/field-notes.md section 2, run from Go through the C ABI
// as the Rust tests run them (engine/tests/{ttl,consumer,replica,space}.rs,
// field_failure_1..5). Where a Rust test uses a ManualClock, these use NewManualClock and
// Stream.EnforceLimits; where it uses an in-memory file system, these use a store in a
// temporary directory.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tidelog"
)

// TestFieldFailure1TTLExpiryLeavesMarker: a key removed by its per-message TTL notifies
// watchers exactly as one removed by max_age does, so a client waiting for a distributed
// lock learns it is free. Runs on the system clock with background maintenance, as a broker
// would.
func TestFieldFailure1TTLExpiryLeavesMarker(t *testing.T) {
	t.Parallel()
	st := openStore(t, t.TempDir())
	markerTTL := 60 * time.Second
	byTTL := createStream(t, st, tidelog.StreamConfig{
		Name: "locks_ttl", AllowMsgTTL: true, SubjectDeleteMarkerTTL: markerTTL, MaxMsgsPerSubject: 1,
	})
	byAge := createStream(t, st, tidelog.StreamConfig{
		Name: "locks_age", AllowMsgTTL: true, SubjectDeleteMarkerTTL: markerTTL, MaxAge: time.Second,
		MaxMsgsPerSubject: 1,
	})
	cases := []struct {
		s   *tidelog.Stream
		ttl time.Duration
	}{{byTTL, time.Second}, {byAge, 0}}
	// Both locks expire in the same second, so the two cases wait side by side.
	var wg sync.WaitGroup
	for _, tc := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := tc.s
			// Client A holds the lock.
			held, err := s.AppendMsg(tidelog.Message{Subject: "locks.job", Payload: []byte("client-a"), TTL: tc.ttl})
			if err != nil {
				t.Error(err)
				return
			}
			// Client B watches the key and takes the lock as soon as it is free.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			w, err := s.Watch(ctx, "locks.job", tidelog.FromLastPerSubject())
			if err != nil {
				t.Error(err)
				return
			}
			if m := <-w.C; m == nil || m.Seq != held.Seq {
				t.Errorf("%s: the watch starts with %+v, want the holder %d", s.Name(), m, held.Seq)
				return
			}
			started := time.Now()
			var marker *tidelog.Msg
			var acquired uint64
			for m := range w.C {
				if m.Marker {
					a, err := s.Append("locks.job", []byte("client-b"))
					if err != nil {
						t.Error(err)
						return
					}
					marker, acquired = m, a.Seq
					cancel()
					break
				}
			}
			if marker == nil {
				t.Errorf("%s: no marker within 10 s (%v)", s.Name(), w.Err())
				return
			}
			if el := time.Since(started); el > 5*time.Second {
				t.Errorf("%s: the marker came after %v", s.Name(), el)
			}
			if marker.Subject != "locks.job" || marker.Header("Nats-Marker-Reason") != "MaxAge" {
				t.Errorf("%s: marker %+v", s.Name(), marker)
			}
			h := string(marker.Headers)
			if !strings.HasPrefix(h, "NATS/1.0\r\n") || !strings.Contains(h, "Nats-TTL: 60s\r\n") ||
				!strings.Contains(h, "Nats-Rollup: sub\r\n") {
				t.Errorf("%s: marker headers %q", s.Name(), h)
			}
			if marker.TTL != markerTTL {
				t.Errorf("%s: marker TTL %v", s.Name(), marker.TTL)
			}
			if _, err := s.Load(held.Seq); !errors.Is(err, tidelog.ErrNotFound) {
				t.Errorf("%s: the lock holder's message is still there (%v)", s.Name(), err)
			}
			last, err := s.LoadLast("locks.job")
			if err != nil || string(last.Payload) != "client-b" {
				t.Errorf("%s: last is %+v, %v", s.Name(), last, err)
			}
			if acquired != marker.Seq+1 {
				t.Errorf("%s: B appended at %d, marker at %d", s.Name(), acquired, marker.Seq)
			}
		}()
	}
	wg.Wait()
}

// TestFieldFailure2MaxDeliveredKeptUnderInterest: on an interest stream a message NAKed until
// max_deliver (1) without an ack stays while the consumer that exhausted it exists. It is not
// ack-pending and stays readable; a short-lived second consumer created and deleted (a
// "view") does not remove it, nor do reads; deleting the consumer that exhausted it does.
func TestFieldFailure2MaxDeliveredKeptUnderInterest(t *testing.T) {
	st, clock := manualStore(t)
	s := createStream(t, st, tidelog.StreamConfig{Name: "kv", Retention: tidelog.InterestRetention})
	worker := must(s.CreateConsumer(tidelog.ConsumerConfig{Name: "worker", MaxDeliver: 1, AckWait: time.Second})).of(t)
	defer worker.Close()
	q := must(s.Append("orders.1", []byte("poison"))).of(t).Seq
	if got := seqsOf(must(worker.Fetch(1)).of(t)); !slices.Equal(got, []uint64{q}) {
		t.Fatalf("first fetch %v", got)
	}
	must(worker.Nak(q, 0)).of(t)
	clock.Advance(2 * time.Second)
	if got := must(worker.Fetch(1)).of(t); len(got) != 0 {
		t.Fatalf("max_deliver 1 reached, yet delivered %v", seqsOf(got))
	}
	state := must(worker.State()).of(t)
	if state.NumAckPending != 0 || state.NumMaxDelivered != 1 {
		t.Fatalf("worker state %+v", state)
	}
	if m := must(s.Load(q)).of(t); string(m.Payload) != "poison" {
		t.Fatalf("payload %q", m.Payload)
	}
	view := must(s.CreateConsumer(tidelog.ConsumerConfig{Name: "view", AckPolicy: tidelog.AckNone})).of(t)
	if got := seqsOf(must(view.Fetch(10)).of(t)); !slices.Equal(got, []uint64{q}) {
		t.Fatalf("view fetched %v", got)
	}
	view.Close()
	ok(t, s.DeleteConsumer("view"))
	if _, err := s.Load(q); err != nil {
		t.Fatalf("deleting another consumer removed it: %v", err)
	}
	clock.Advance(3600 * time.Second)
	must(s.LoadNext(">", 1)).of(t)
	if _, err := s.Load(q); err != nil {
		t.Fatalf("reading removed it: %v", err)
	}
	ok(t, s.DeleteConsumer("worker"))
	if _, err := s.Load(q); !errors.Is(err, tidelog.ErrNotFound) {
		t.Fatalf("nothing holds it any more, yet Load gives %v", err)
	}
}

// rng is the xorshift generator of engine/tests/common, so the seeds give the Rust test's
// operation sequences.
type rng uint64

func (r *rng) next() uint64 {
	x := uint64(*r)
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	*r = rng(x)
	return x
}

func (r *rng) below(n uint64) uint64  { return r.next() % n }
func (r *rng) chance(pct uint64) bool { return r.below(100) < pct }

const kvSubjects = 12

func kvSubject(i uint64) string { return fmt.Sprintf("kv.key%d", i) }

// liveSeqs lists a stream's live sequences by walking LoadNext.
func liveSeqs(t *testing.T, s *tidelog.Stream) []uint64 {
	var out []uint64
	for from := uint64(1); ; {
		m, err := s.LoadNext(">", from)
		if errors.Is(err, tidelog.ErrNotFound) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m.Seq)
		from = m.Seq + 1
	}
}

// kvView is what every read of a stream answers, in the terms the Rust test compares: the
// stream's state digest (first and last sequence, count, and every live message's sequence,
// time, TTL, rollup, subject, headers, payload and id) and the last message of every subject.
type kvView struct {
	digest uint64
	last   [kvSubjects]string
}

func viewOf(t *testing.T, s *tidelog.Stream) kvView {
	v := kvView{digest: must(s.StateDigest()).of(t)}
	for i := range uint64(kvSubjects) {
		m, err := s.LoadLast(kvSubject(i))
		switch {
		case errors.Is(err, tidelog.ErrNotFound):
			v.last[i] = "none"
		case err != nil:
			t.Fatal(err)
		default:
			v.last[i] = fmt.Sprintf("%d %q", m.Seq, m.Payload)
		}
	}
	return v
}

func (v kvView) String() string {
	return fmt.Sprintf("digest %016x, last per subject %q", v.digest, v.last[:])
}

// kvListing spells out a stream's live messages, to show what differs when views do.
func kvListing(t *testing.T, s *tidelog.Stream) string {
	var b strings.Builder
	state := must(s.State()).of(t)
	fmt.Fprintf(&b, "first=%d last=%d n=%d\n", state.FirstSeq, state.LastSeq, state.Messages)
	for from := uint64(1); ; {
		m, err := s.LoadNext(">", from)
		if errors.Is(err, tidelog.ErrNotFound) {
			return b.String()
		}
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%d@%d ttl=%v r=%d %s h=%q p=%q id=%q\n", m.Seq, m.Time.UnixNano(), m.TTL, m.Rollup,
			m.Subject, m.Headers, m.Payload, m.MsgID)
		from = m.Seq + 1
	}
}

// kvHistory holds the origin's views at each of its sequences, and whether each is still a
// state the mirror can reach (a message removed before the mirror read it is a gap there).
type kvHistory struct {
	at    map[uint64]kvView
	valid map[uint64]bool
}

func (h *kvHistory) record(seq uint64, v kvView) { h.at[seq], h.valid[seq] = v, true }

func (h *kvHistory) removed(seq uint64) {
	for q := range h.valid {
		if q >= seq {
			h.valid[q] = false
		}
	}
}

// catchUp applies origin messages up to upto to the mirror, checking it after each one
// against the origin's view at that sequence; returns how many checks were made.
func catchUp(t *testing.T, origin, mirror *tidelog.Stream, upto uint64, hist *kvHistory) int {
	checked := 0
	from := must(mirror.State()).of(t).LastSeq + 1
	for from <= upto {
		m, err := origin.LoadNext(">", from)
		if errors.Is(err, tidelog.ErrNotFound) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if m.Seq > upto {
			break
		}
		err = mirror.AppendRaw(m.Seq, m.Time, tidelog.Message{
			Subject: m.Subject, Headers: m.Headers, Payload: m.Payload, TTL: m.TTL, Rollup: m.Rollup, MsgID: m.MsgID,
		})
		if err != nil {
			t.Fatalf("applying %d: %v", m.Seq, err)
		}
		from = m.Seq + 1
		if want, ok := hist.at[m.Seq]; ok && hist.valid[m.Seq] {
			if got := viewOf(t, mirror); got != want {
				t.Fatalf("mirror after applying %d:\n%v\nwant (the origin at %d):\n%v\nmirror:\n%s", m.Seq, got, m.Seq, want,
					kvListing(t, mirror))
			}
			checked++
		}
	}
	return checked
}

// kvRun is the Rust test's run(seed, ops): an origin with rollups, TTLs, ids and retries,
// and a mirror applying its messages with AppendRaw at random moments.
func kvRun(t *testing.T, seed uint64, ops int) (checked, caughtUp int) {
	st, clock := manualStore(t)
	cfg := func(name string) tidelog.StreamConfig {
		// Durability does not matter here and syncing every append would only slow the run
		// (the Rust test runs on an in-memory file system).
		return tidelog.StreamConfig{
			Name: name, AllowRollup: true, AllowMsgTTL: true, Durability: tidelog.DurabilityNone,
			Dedup: tidelog.Dedup{Window: time.Hour, MaxIDs: 100_000},
		}
	}
	origin := createStream(t, st, cfg("kv"))
	mirror := createStream(t, st, cfg("kv-mirror"))
	r := rng(seed)
	hist := &kvHistory{at: map[uint64]kvView{}, valid: map[uint64]bool{}}
	type sentMsg struct{ subject, payload, id string }
	var sent *sentMsg
	lastSeq := func(s *tidelog.Stream) uint64 { return must(s.State()).of(t).LastSeq }
	for step := range ops {
		switch k := r.below(100); {
		case k <= 4 && sent != nil:
			// A retry: the origin stores nothing and returns the first sequence, so the
			// mirror has nothing to apply.
			before := lastSeq(origin)
			a := must(origin.AppendMsg(tidelog.Message{Subject: sent.subject, Payload: []byte(sent.payload), MsgID: sent.id})).of(t)
			if !a.Duplicate || lastSeq(origin) != before {
				t.Fatalf("retry of %s at step %d: %+v", sent.id, step, a)
			}
		case k <= 59:
			// An update of a key: mostly a subject rollup (a KV put), sometimes with a TTL.
			if last := lastSeq(origin); last > 0 {
				hist.record(last, viewOf(t, origin))
			}
			subject := kvSubject(r.below(kvSubjects))
			payload := fmt.Sprintf("%s=%d", subject, step)
			id := fmt.Sprintf("%d-%d", seed, step)
			m := tidelog.Message{Subject: subject, Payload: []byte(payload), MsgID: id}
			all := false
			switch x := r.below(100); {
			case x <= 2:
				m.Rollup, all = tidelog.RollupAll, true
			case x <= 69:
				m.Rollup = tidelog.RollupSubject
			case x <= 84:
				m.TTL = time.Duration(1+r.below(5)) * time.Second
			}
			before := liveSeqs(t, origin)
			if a := must(origin.AppendMsg(m)).of(t); a.Duplicate {
				t.Fatalf("step %d stored nothing", step)
			}
			sent = &sentMsg{subject, payload, id}
			// What the rollup replaced and the mirror has not read is a gap for it.
			after := liveSeqs(t, origin)
			unread := lastSeq(mirror)
			for _, q := range before {
				if _, found := slices.BinarySearch(after, q); q > unread && !found {
					hist.removed(q)
				}
			}
			if all {
				checked += catchUp(t, origin, mirror, lastSeq(origin), hist)
			}
		case k <= 69:
			// The origin removes a message the mirror has not read yet (a gap for it).
			lo, hi := lastSeq(mirror)+1, lastSeq(origin)
			if lo <= hi {
				q := lo + r.below(hi-lo+1)
				m, err := origin.Load(q)
				if err == nil && m.Rollup == tidelog.RollupNone && origin.Remove(q) == nil {
					hist.removed(q)
				}
			}
		case k <= 79:
			// Time passes: TTLs expire on both. Views taken before hold messages that are
			// gone now on either side.
			clock.Advance(time.Duration(r.below(3000)) * time.Millisecond)
			for _, s := range []*tidelog.Stream{origin, mirror} {
				before := liveSeqs(t, s)
				ok(t, s.EnforceLimits())
				after := liveSeqs(t, s)
				for _, q := range before {
					if _, found := slices.BinarySearch(after, q); !found {
						hist.removed(q)
					}
				}
			}
		default:
			// The mirror reads part of what it lags behind, or all of it.
			lo, hi := lastSeq(mirror), lastSeq(origin)
			upto := hi
			if !r.chance(50) {
				upto = lo + r.below(hi-lo+1)
			}
			checked += catchUp(t, origin, mirror, upto, hist)
		}
		if lastSeq(mirror) == lastSeq(origin) {
			if got, want := viewOf(t, mirror), viewOf(t, origin); got != want {
				t.Fatalf("caught up after step %d:\n%v\nwant:\n%v\nmirror:\n%s\norigin:\n%s", step, got, want,
					kvListing(t, mirror), kvListing(t, origin))
			}
			caughtUp++
		}
	}
	checked += catchUp(t, origin, mirror, lastSeq(origin), hist)
	if got, want := viewOf(t, mirror), viewOf(t, origin); got != want {
		t.Fatalf("caught up at the end:\n%v\nwant:\n%v\nmirror:\n%s\norigin:\n%s", got, want,
			kvListing(t, mirror), kvListing(t, origin))
	}
	return checked, caughtUp
}

// TestFieldFailure3MirrorRollupServesNewest: applying the origin's messages (with origin
// sequences, rollups and gaps) to a replica yields exactly the origin's visible state: at
// every applied sequence, the mirror's state digest and the last message of every subject are
// the origin's at that sequence.
func TestFieldFailure3MirrorRollupServesNewest(t *testing.T) {
	var checked, caughtUp atomic.Int64
	t.Run("seeds", func(t *testing.T) {
		for seed := uint64(1); seed <= 8; seed++ {
			t.Run(fmt.Sprint(seed), func(t *testing.T) {
				t.Parallel()
				c, u := kvRun(t, seed*0x9E3779B97F4A7C15|1, 600)
				checked.Add(int64(c))
				caughtUp.Add(int64(u))
			})
		}
	})
	t.Logf("%d checks against the origin's history, %d of a caught-up mirror", checked.Load(), caughtUp.Load())
	// Enough comparisons were made for the test to mean something.
	if c := checked.Load(); c <= 500 {
		t.Fatalf("only %d checks against the origin's history", c)
	}
	if u := caughtUp.Load(); u <= 200 {
		t.Fatalf("only %d checks of a caught-up mirror", u)
	}
}

// TestFieldFailure4UnboundedStreamHitsBudgetSafely: a stream created with no limits at all,
// fed until the store's budget is reached, answers with typed errors (never a crash, never
// corruption), reopens intact, and writes again once consuming and deleting free space.
func TestFieldFailure4UnboundedStreamHitsBudgetSafely(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const budget, reserve = 8 << 20, 1 << 20
	open := func() *tidelog.Store {
		return must(tidelog.Open(dir, tidelog.WithBudgetBytes(budget, reserve), tidelog.WithManualMaintenance())).of(t)
	}
	// Appends 1 KiB messages until one fails; returns the acknowledged sequences and the
	// error.
	fill := func(s *tidelog.Stream, tag byte) ([]uint64, error) {
		var acked []uint64
		payload := bytes.Repeat([]byte{tag}, 1024)
		for {
			a, err := s.Append("orders.new", payload)
			if err != nil {
				return acked, err
			}
			acked = append(acked, a.Seq)
			if len(acked) >= 1_000_000 {
				t.Fatal("the budget never stopped appends")
			}
		}
	}
	store := open()
	// As a careless user would: no limits, limits retention, an explicit-ack consumer that
	// keeps acknowledging, and a producer that never looks at the store's size.
	s := must(store.CreateStream(tidelog.StreamConfig{Name: "orders", BlockSize: 256 << 10, Discard: tidelog.DiscardNew})).of(t)
	state := must(s.State()).of(t)
	if state.BoundBy != tidelog.BoundByStore || state.MaxBytes != budget-reserve {
		t.Fatalf("the store's budget must bound it: %+v", state)
	}
	c := must(s.CreateConsumer(tidelog.ConsumerConfig{Name: "worker", AckPolicy: tidelog.AckExplicit})).of(t)
	acked, err := fill(s, 1)
	e := wantErr(t, err, tidelog.ErrStorageFull)
	if e.Limit == 0 || e.Need == 0 {
		t.Fatalf("StorageFull without budget figures: %+v", e)
	}
	if b := must(store.Budget()).of(t); b.Used > budget {
		t.Fatalf("budget overrun: %+v", b)
	}
	// Refused appends change nothing; reads, consumers and the rest keep working.
	before := must(s.State()).of(t)
	for range 10 {
		_, err := s.Append("orders.new", make([]byte, 1024))
		wantErr(t, err, tidelog.ErrStorageFull)
	}
	if after := must(s.State()).of(t); after != before {
		t.Fatalf("a refused append changed the stream:\n%+v\n%+v", before, after)
	}
	for _, d := range must(c.Fetch(100)).of(t) {
		must(c.Ack(d.Seq)).of(t)
	}
	c.Close()
	s.Close()
	ok(t, store.Close())

	// Reopen: every acknowledged message is there, intact.
	store = open()
	defer store.Close()
	s = must(store.Stream("orders")).of(t)
	defer s.Close()
	want := bytes.Repeat([]byte{1}, 1024)
	for _, q := range acked {
		if m := must(s.Load(q)).of(t); !bytes.Equal(m.Payload, want) {
			t.Fatalf("message %d damaged", q)
		}
	}
	if n := must(s.State()).of(t).Messages; n != uint64(len(acked)) {
		t.Fatalf("%d messages after reopen, %d acknowledged", n, len(acked))
	}
	_, err = s.Append("orders.new", make([]byte, 1024))
	wantErr(t, err, tidelog.ErrStorageFull)
	// Consuming and deleting frees space: the oldest half goes, and appends resume.
	must(s.Compact(acked[len(acked)/2])).of(t)
	must(s.Reclaim()).of(t)
	more, err := fill(s, 2)
	if len(more) < len(acked)/4 {
		t.Fatalf("only %d appends resumed (of %d before)", len(more), len(acked))
	}
	wantErr(t, err, tidelog.ErrStorageFull)
	if more[0] <= acked[len(acked)-1] {
		t.Fatalf("sequence %d reused after %d", more[0], acked[len(acked)-1])
	}
	ok(t, store.Close())
}

// TestFieldFailure5DeletedPendingNeverStalls: 1,000 pending messages are NAKed, half of them
// are deleted before their redelivery; the consumer redelivers the rest at once, every
// counter is exact, nothing stalls (the deleted ones free their max_ack_pending slots for new
// messages).
func TestFieldFailure5DeletedPendingNeverStalls(t *testing.T) {
	st, clock := manualStore(t)
	s := createStream(t, st, tidelog.StreamConfig{Name: "s"})
	for range 1500 {
		must(s.Append("work", nil)).of(t)
	}
	c := must(s.CreateConsumer(tidelog.ConsumerConfig{Name: "c", MaxAckPending: 1000, AckWait: 30 * time.Second})).of(t)
	defer c.Close()
	if n := len(must(c.Fetch(2000)).of(t)); n != 1000 {
		t.Fatalf("fetched %d", n)
	}
	for q := uint64(1); q <= 1000; q++ {
		must(c.Nak(q, 5*time.Second)).of(t)
	}
	state := must(c.State()).of(t)
	if state.NumAckPending != 1000 || state.NumWaitingRedelivery != 1000 {
		t.Fatalf("after the naks: %+v", state)
	}
	// Half of them go, by several kinds of removal, before their redelivery.
	for q := uint64(2); q <= 400; q += 2 {
		ok(t, s.Remove(q))
	}
	ok(t, s.Erase(402))
	must(s.PurgeFiltered("work", 601, 0)).of(t)
	must(s.Compact(700)).of(t)
	var gone uint64 = 1000
	for q := uint64(1); q <= 1000; q++ {
		if _, err := s.Load(q); err == nil {
			gone--
		}
	}
	if gone < 500 {
		t.Fatalf("only %d removed", gone)
	}
	state = must(c.State()).of(t)
	if state.NumAckPending != 1000-gone || state.NumWaitingRedelivery != 1000-gone || state.AckFloor.StreamSeq != 699 {
		t.Fatalf("after the removals (%d gone): %+v", gone, state)
	}
	// The freed slots take new messages at once; the rest are redelivered when due.
	fresh := must(c.Fetch(2000)).of(t)
	if uint64(len(fresh)) != min(gone, 500) {
		t.Fatalf("%d new ones fetched, want all %d to fit the freed slots", len(fresh), min(gone, 500))
	}
	for _, d := range fresh {
		if d.DeliveryCount != 1 || d.Seq <= 1000 {
			t.Fatalf("fresh delivery %d (count %d)", d.Seq, d.DeliveryCount)
		}
	}
	clock.Advance(5 * time.Second)
	again := must(c.Fetch(2000)).of(t)
	if uint64(len(again)) != 1000-gone {
		t.Fatalf("%d redelivered, want %d", len(again), 1000-gone)
	}
	for _, d := range again {
		if d.DeliveryCount != 2 {
			t.Fatalf("redelivery %d has count %d", d.Seq, d.DeliveryCount)
		}
		if _, err := s.Load(d.Seq); err != nil {
			t.Fatalf("redelivered a removed message %d", d.Seq)
		}
	}
	for _, d := range append(fresh, again...) {
		if o := must(c.Ack(d.Seq)).of(t); o != tidelog.AckDone {
			t.Fatalf("ack of %d: %v", d.Seq, o)
		}
	}
	state = must(c.State()).of(t)
	if state.NumAckPending != 0 || state.NumWaitingRedelivery != 0 || state.NumRedelivered != 0 {
		t.Fatalf("after the acks: %+v", state)
	}
	if state.AckFloor.StreamSeq != state.Delivered.StreamSeq {
		t.Fatalf("ack floor %d, delivered %d", state.AckFloor.StreamSeq, state.Delivered.StreamSeq)
	}
	if state.NumPending != 500-uint64(len(fresh)) {
		t.Fatalf("num_pending %d, want %d", state.NumPending, 500-len(fresh))
	}
}
