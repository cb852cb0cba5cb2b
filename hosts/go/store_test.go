package tidelog_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"tidelog"
)

// t0 is the manual clocks' start, as in the Rust tests.
var t0 = time.Unix(1_700_000_000, 0)

func openStore(t testing.TB, dir string, opts ...tidelog.Option) *tidelog.Store {
	t.Helper()
	st, err := tidelog.Open(dir, opts...)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func createStream(t testing.TB, st *tidelog.Store, cfg tidelog.StreamConfig) *tidelog.Stream {
	t.Helper()
	s, err := st.CreateStream(cfg)
	if err != nil {
		t.Fatalf("CreateStream(%s): %v", cfg.Name, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// result carries a call's value and error to the test: must(s.Load(1)).of(t).
type result[T any] struct {
	v   T
	err error
}

func must[T any](v T, err error) result[T] { return result[T]{v, err} }

// of returns the value, failing the test on an error.
func (r result[T]) of(t testing.TB) T {
	t.Helper()
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.v
}

func ok(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t testing.TB, err error, target error) *tidelog.Error {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("got error %v, want one matching %v", err, target)
	}
	var e *tidelog.Error
	if !errors.As(err, &e) {
		t.Fatalf("%v is not a *tidelog.Error", err)
	}
	return e
}

func TestOpenCreateAppendLoad(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir, tidelog.WithIOBackend(tidelog.IOPwrite))
	if b := must(st.IOBackend()).of(t); b != tidelog.BackendPwrite {
		t.Fatalf("IOBackend = %v, want pwrite", b)
	}
	if d := must(st.Dir()).of(t); d != dir {
		t.Fatalf("Dir = %q, want %q", d, dir)
	}
	s := createStream(t, st, tidelog.StreamConfig{Name: "orders", Subjects: []string{"orders.>"}})
	if s.Name() != "orders" {
		t.Fatalf("Name = %q", s.Name())
	}
	a := must(s.Append("orders.eu.42", []byte(`{"qty":1}`))).of(t)
	if a.Seq != 1 || a.Duplicate || a.Time.IsZero() {
		t.Fatalf("Append = %+v", a)
	}
	h := []byte("NATS/1.0\r\nTrace: yes\r\n\r\n")
	b := must(s.AppendWithHeaders("orders.us.7", h, []byte("x"))).of(t)
	m := must(s.Load(b.Seq)).of(t)
	if m.Subject != "orders.us.7" || !bytes.Equal(m.Headers, h) || string(m.Payload) != "x" || m.Seq != 2 {
		t.Fatalf("Load = %+v", m)
	}
	if m.Header("Trace") != "yes" {
		t.Fatalf("Header(Trace) = %q", m.Header("Trace"))
	}
	if !m.Time.Equal(b.Time) {
		t.Fatalf("time %v, appended at %v", m.Time, b.Time)
	}
	// Large messages come back through the library's own buffers, small ones through the
	// scratch copy: both must be exact.
	big := bytes.Repeat([]byte("0123456789abcdef"), 8192)
	c := must(s.Append("orders.eu.big", big)).of(t)
	if got := must(s.Load(c.Seq)).of(t); !bytes.Equal(got.Payload, big) || got.Subject != "orders.eu.big" {
		t.Fatalf("big message came back as %d bytes on %q", len(got.Payload), got.Subject)
	}
	empty := must(s.Append("orders.empty", nil)).of(t)
	if got := must(s.Load(empty.Seq)).of(t); got.Payload == nil || len(got.Payload) != 0 {
		t.Fatalf("empty payload came back as %#v", got.Payload)
	}

	names := must(st.StreamNames()).of(t)
	if !slices.Equal(names, []string{"orders"}) {
		t.Fatalf("StreamNames = %v", names)
	}
	state := must(s.State()).of(t)
	if state.Messages != 4 || state.FirstSeq != 1 || state.LastSeq != 4 || state.NumSubjects != 4 {
		t.Fatalf("State = %+v", state)
	}
	if state.BoundBy != tidelog.BoundByStore || state.MaxBytes == 0 {
		t.Fatalf("a stream without limits is bound by the store's budget: %+v", state)
	}
	budget := must(st.Budget()).of(t)
	if budget.MaxBytes == 0 || budget.Used == 0 || budget.Reserve >= budget.MaxBytes {
		t.Fatalf("Budget = %+v", budget)
	}
	js := must(s.ConfigJSON()).of(t)
	if !strings.Contains(js, `"orders"`) {
		t.Fatalf("ConfigJSON = %s", js)
	}

	// Closed and reopened, everything is there.
	ok(t, st.Close())
	st2 := openStore(t, dir)
	s2 := must(st2.Stream("orders")).of(t)
	defer s2.Close()
	if got := must(s2.Load(1)).of(t); string(got.Payload) != `{"qty":1}` {
		t.Fatalf("after reopen: %+v", got)
	}
	if err := st2.DeleteStream("orders"); err != nil {
		t.Fatal(err)
	}
	_, err := s2.Append("orders.eu.1", nil)
	wantErr(t, err, tidelog.ErrClosed)
	if names := must(st2.StreamNames()).of(t); len(names) != 0 {
		t.Fatalf("after delete: %v", names)
	}
}

func TestAppendMsgTTLRollupDedupExpect(t *testing.T) {
	clock := tidelog.NewManualClock(t0)
	defer clock.Close()
	st := openStore(t, t.TempDir(), tidelog.WithClock(clock), tidelog.WithManualMaintenance())
	s := createStream(t, st, tidelog.StreamConfig{
		Name: "kv", AllowMsgTTL: true, AllowRollup: true,
		Dedup: tidelog.Dedup{Window: time.Minute, MaxIDs: 1000},
	})
	a := must(s.AppendMsg(tidelog.Message{Subject: "kv.a", Payload: []byte("1"), TTL: 5 * time.Second, MsgID: "id-1"})).of(t)
	if a.Seq != 1 || !a.Time.Equal(t0) {
		t.Fatalf("AppendMsg = %+v", a)
	}
	dup := must(s.AppendMsg(tidelog.Message{Subject: "kv.a", Payload: []byte("again"), MsgID: "id-1"})).of(t)
	if !dup.Duplicate || dup.Seq != 1 {
		t.Fatalf("a retry must return the first sequence: %+v", dup)
	}
	m := must(s.Load(1)).of(t)
	if m.TTL != 5*time.Second || m.MsgID != "id-1" {
		t.Fatalf("Load = %+v", m)
	}
	must(s.AppendMsg(tidelog.Message{Subject: "kv.b", Payload: []byte("b"), TTL: tidelog.TTLNever})).of(t)
	if m := must(s.Load(2)).of(t); m.TTL != tidelog.TTLNever {
		t.Fatalf("TTL never came back as %v", m.TTL)
	}
	must(s.Append("kv.a", []byte("2"))).of(t)
	r := must(s.AppendMsg(tidelog.Message{Subject: "kv.a", Payload: []byte("3"), Rollup: tidelog.RollupSubject})).of(t)
	if _, err := s.Load(3); !errors.Is(err, tidelog.ErrNotFound) {
		t.Fatalf("the rollup left message 3: %v", err)
	}
	if m := must(s.LoadLast("kv.a")).of(t); m.Seq != r.Seq || m.Rollup != tidelog.RollupSubject {
		t.Fatalf("LoadLast = %+v", m)
	}

	// Expectations, checked with the append.
	e := wantErr(t, func() error {
		_, err := s.AppendMsg(tidelog.Message{Subject: "kv.c", Expect: tidelog.Expect{CheckLastSeq: true, LastSeq: 1}})
		return err
	}(), tidelog.ErrWrongLastSequence)
	if e.Expected != 1 || e.Current != r.Seq {
		t.Fatalf("expected/current = %d/%d, want 1/%d", e.Expected, e.Current, r.Seq)
	}
	must(s.AppendMsg(tidelog.Message{Subject: "kv.c", Expect: tidelog.Expect{CheckLastSeq: true, LastSeq: r.Seq}})).of(t)
	_, err := s.AppendMsg(tidelog.Message{Subject: "kv.a", Expect: tidelog.Expect{CheckLastSubjectSeq: true, LastSubjectSeq: 1}})
	wantErr(t, err, tidelog.ErrWrongLastSubjectSequence)
	_, err = s.AppendMsg(tidelog.Message{Subject: "kv.d", Expect: tidelog.Expect{CheckLastSubjectSeq: true, LastSubjectSeq: r.Seq, Filter: "kv.a"}})
	if err != nil {
		t.Fatalf("expectation on a filter: %v", err)
	}

	// TTLs run on the store's clock.
	clock.Advance(6 * time.Second)
	if err := s.EnforceLimits(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(1); !errors.Is(err, tidelog.ErrNotFound) {
		t.Fatalf("message 1 outlived its TTL: %v", err)
	}
	if got := clock.Now(); !got.Equal(t0.Add(6 * time.Second)) {
		t.Fatalf("clock reads %v", got)
	}
}

func TestBatchAndQueries(t *testing.T) {
	st := openStore(t, t.TempDir())
	s := createStream(t, st, tidelog.StreamConfig{Name: "q", Durability: tidelog.DurabilityNone})
	msgs := make([]tidelog.Message, 0, 30)
	for i := range 30 {
		msgs = append(msgs, tidelog.Message{
			Subject: fmt.Sprintf("q.%c.%d", 'a'+rune(i%3), i),
			Headers: []byte(fmt.Sprintf("H%d", i)),
			Payload: []byte(fmt.Sprintf("p%d", i)),
			MsgID:   fmt.Sprintf("m%d", i),
		})
	}
	b := must(s.AppendBatch(msgs)).of(t)
	if b.FirstSeq != 1 || b.LastSeq != 30 || b.Time.IsZero() {
		t.Fatalf("AppendBatch = %+v", b)
	}
	for i := range msgs {
		m := must(s.Load(uint64(i + 1))).of(t)
		if m.Subject != msgs[i].Subject || string(m.Headers) != string(msgs[i].Headers) ||
			string(m.Payload) != string(msgs[i].Payload) || m.MsgID != msgs[i].MsgID || !m.Time.Equal(b.Time) {
			t.Fatalf("message %d came back as %+v", i+1, m)
		}
	}
	// Expectations travel in the packed batch too.
	x := must(s.AppendBatch([]tidelog.Message{
		{Subject: "q.x", Payload: []byte("1"), Expect: tidelog.Expect{CheckLastSeq: true, LastSeq: 30}},
		{Subject: "q.y", Payload: []byte("2"), Expect: tidelog.Expect{CheckLastSubjectSeq: true, LastSubjectSeq: 0, Filter: "q.y"}},
	})).of(t)
	if x.FirstSeq != 31 || x.LastSeq != 32 {
		t.Fatalf("batch with expectations = %+v", x)
	}
	_, err := s.AppendBatch([]tidelog.Message{{Subject: "q.z", Expect: tidelog.Expect{CheckLastSeq: true, LastSeq: 1}}})
	wantErr(t, err, tidelog.ErrWrongLastSequence)

	next := must(s.LoadNext("q.b.*", 3)).of(t)
	if next.Seq != 5 {
		t.Fatalf("LoadNext(q.b.*, 3) = %d", next.Seq)
	}
	prev := must(s.LoadPrev("q.a.>", 29)).of(t)
	if prev.Seq != 28 {
		t.Fatalf("LoadPrev = %d", prev.Seq)
	}
	last := must(s.LoadLast("q.c.*")).of(t)
	if last.Seq != 30 {
		t.Fatalf("LoadLast = %d", last.Seq)
	}
	_, err = s.LoadNext("none.>", 1)
	wantErr(t, err, tidelog.ErrNotFound)
	if n := must(s.NumPending(1, "q.a.>", false)).of(t); n != 10 {
		t.Fatalf("NumPending = %d", n)
	}
	if n := must(s.NumPending(1, "q.*.*", true)).of(t); n != 30 {
		t.Fatalf("NumPending last per subject = %d", n)
	}
	subs := must(s.SubjectsState("q.a.*")).of(t)
	if len(subs) != 10 || subs[0].Subject != "q.a.0" || subs[0].Messages != 1 || subs[0].FirstSeq != 1 {
		t.Fatalf("SubjectsState = %+v", subs)
	}
	seqs := must(s.MultiLastSeqs([]string{"q.a.*", "q.x"}, 0, 100)).of(t)
	if len(seqs) != 11 || seqs[len(seqs)-1] != 31 || !slices.IsSorted(seqs) {
		t.Fatalf("MultiLastSeqs = %v", seqs)
	}
	_, err = s.MultiLastSeqs([]string{"q.>"}, 0, 1)
	wantErr(t, err, tidelog.ErrTooManyResults)
	if q := must(s.SeqForTime(b.Time)).of(t); q != 1 {
		t.Fatalf("SeqForTime = %d", q)
	}

	// Removals.
	ok(t, s.Remove(2))
	ok(t, s.Erase(3))
	wantErr(t, s.Remove(2), tidelog.ErrNotFound)
	if n := must(s.PurgeFiltered("q.a.*", 0, 0)).of(t); n != 10 {
		t.Fatalf("PurgeFiltered removed %d", n)
	}
	if n := must(s.Compact(10)).of(t); n != 4 {
		t.Fatalf("Compact removed %d", n)
	}
	if n := must(s.Truncate(30)).of(t); n != 2 {
		t.Fatalf("Truncate removed %d", n)
	}
	last2 := must(s.Skip(5)).of(t)
	if last2 != 35 {
		t.Fatalf("Skip = %d", last2)
	}
	if n := must(s.Purge()).of(t); n == 0 {
		t.Fatal("Purge removed nothing")
	}
	state := must(s.State()).of(t)
	if state.Messages != 0 || state.LastSeq != 35 {
		t.Fatalf("after purge: %+v", state)
	}
	if a := must(s.Append("q.after", nil)).of(t); a.Seq != 36 {
		t.Fatalf("sequences are never reused: got %d", a.Seq)
	}
	ok(t, s.Checkpoint())
	must(s.Reclaim()).of(t)
	ok(t, s.UpdateLimits(tidelog.Limits{MaxMsgs: 1}))
	must(s.Append("q.after", nil)).of(t)
	if st := must(s.State()).of(t); st.Messages != 1 {
		t.Fatalf("a tightened limit applies at once: %+v", st)
	}
}

// TestErrorsIs provokes each common status and checks the sentinel and the details.
func TestErrorsIs(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir, tidelog.WithManualMaintenance())
	s := createStream(t, st, tidelog.StreamConfig{Name: "e", Subjects: []string{"e.>"}, MaxMsgSize: 100})
	must(s.Append("e.1", nil)).of(t)

	_, err := st.CreateStream(tidelog.StreamConfig{Name: "e"})
	wantErr(t, err, tidelog.ErrStreamExists)
	_, err = st.Stream("nope")
	wantErr(t, err, tidelog.ErrStreamNotFound)
	_, err = st.CreateStream(tidelog.StreamConfig{Name: "bad name"})
	wantErr(t, err, tidelog.ErrInvalidName)
	_, err = st.CreateStream(tidelog.StreamConfig{Name: "d", Dedup: tidelog.Dedup{Window: time.Second}})
	wantErr(t, err, tidelog.ErrConfig)
	_, err = st.CreateStream(tidelog.StreamConfig{Name: "neg", MaxAge: -time.Second})
	wantErr(t, err, tidelog.ErrConfig)
	_, err = tidelog.Open(t.TempDir(), tidelog.WithBudgetBytes(10, 0))
	wantErr(t, err, tidelog.ErrConfig)

	_, err = s.Load(99)
	if e := wantErr(t, err, tidelog.ErrNotFound); e.Seq != 99 {
		t.Fatalf("NotFound names seq %d", e.Seq)
	}
	_, err = s.Append("e..x", nil)
	wantErr(t, err, tidelog.ErrInvalidSubject)
	_, err = s.Append("other", nil)
	wantErr(t, err, tidelog.ErrSubjectNotInStream)
	_, err = s.LoadNext("e.>.x", 1)
	wantErr(t, err, tidelog.ErrInvalidFilter)
	_, err = s.Append("e.big", make([]byte, 200))
	wantErr(t, err, tidelog.ErrTooLarge)
	_, err = s.AppendMsg(tidelog.Message{Subject: "e.r", Rollup: tidelog.RollupAll})
	wantErr(t, err, tidelog.ErrNotAllowed)
	_, err = s.AppendMsg(tidelog.Message{Subject: "e.t", TTL: time.Second})
	wantErr(t, err, tidelog.ErrNotAllowed)
	_, err = s.AppendMsg(tidelog.Message{Subject: "e.t", TTL: 1500 * time.Millisecond})
	wantErr(t, err, tidelog.ErrInvalidTTL)
	_, err = s.AppendMsg(tidelog.Message{Subject: "e.i", MsgID: strings.Repeat("x", 256)})
	wantErr(t, err, tidelog.ErrInvalidMsgID)
	_, err = s.AppendBatch(nil)
	wantErr(t, err, tidelog.ErrEmptyBatch)
	_, err = s.AppendBatch([]tidelog.Message{{Subject: "e.1"}, {Subject: "e.2", Rollup: tidelog.RollupSubject}})
	if e := wantErr(t, err, tidelog.ErrNotAllowed); e.Index != 1 {
		t.Fatalf("batch error names index %d", e.Index)
	}
	_, err = s.AppendBatch([]tidelog.Message{{Subject: "e.1"}, {Subject: "e..2"}})
	wantErr(t, err, tidelog.ErrInvalidSubject)
	_, err = s.Append("e.nul\x00", nil)
	wantErr(t, err, tidelog.ErrInvalidSubject)
	_, err = s.LoadLast("e.\x00")
	wantErr(t, err, tidelog.ErrInvalidArgument)
	err = s.AppendRaw(1, time.Now(), tidelog.Message{Subject: "e.raw"})
	wantErr(t, err, tidelog.ErrSequenceNotAfterLast)

	lim := createStream(t, st, tidelog.StreamConfig{Name: "lim", MaxMsgs: 2, Discard: tidelog.DiscardNew})
	must(lim.Append("a", nil)).of(t)
	must(lim.Append("a", nil)).of(t)
	_, err = lim.Append("a", nil)
	wantErr(t, err, tidelog.ErrLimitReached)

	dd := createStream(t, st, tidelog.StreamConfig{Name: "dd", Dedup: tidelog.Dedup{Window: time.Hour, MaxIDs: 10}})
	must(dd.AppendMsg(tidelog.Message{Subject: "a", MsgID: "x"})).of(t)
	_, err = dd.AppendBatch([]tidelog.Message{{Subject: "a", MsgID: "y"}, {Subject: "a", MsgID: "x"}})
	if e := wantErr(t, err, tidelog.ErrDuplicate); e.Seq != 1 || e.Index != 1 {
		t.Fatalf("Duplicate names seq %d index %d", e.Seq, e.Index)
	}

	c := must(s.CreateConsumer(tidelog.ConsumerConfig{Name: "c"})).of(t)
	_, err = s.CreateConsumer(tidelog.ConsumerConfig{Name: "c"})
	wantErr(t, err, tidelog.ErrConsumerExists)
	_, err = s.Consumer("nope")
	wantErr(t, err, tidelog.ErrConsumerNotFound)
	_, err = s.CreateConsumer(tidelog.ConsumerConfig{Name: "f", Filters: []string{"e.*", "e.x"}})
	wantErr(t, err, tidelog.ErrConfig)
	ok(t, s.DeleteConsumer("c"))
	_, err = c.Fetch(1)
	wantErr(t, err, tidelog.ErrConsumerDeleted)
	c.Close()

	// A second open of a locked store.
	_, err = tidelog.Open(dir)
	wantErr(t, err, tidelog.ErrLocked)

	// The errno of an I/O failure is reachable with errors.Is.
	_, err = s.SnapshotFile(filepath.Join(dir, "no", "such", "dir", "snap"), 0)
	e := wantErr(t, err, tidelog.ErrIO)
	if !errors.Is(err, syscall.ENOENT) || e.OSCode != syscall.ENOENT {
		t.Fatalf("%v does not carry ENOENT (%d)", err, e.OSCode)
	}

	// Sentinels match only their own status.
	if errors.Is(err, tidelog.ErrNotFound) {
		t.Fatal("an I/O error matched ErrNotFound")
	}
	if tidelog.StatusStorageFull.String() != "TIDELOG_STATUS_STORAGE_FULL" {
		t.Fatalf("status name %q", tidelog.StatusStorageFull)
	}
}

// TestDamagedFiles damages one stored record and another stream's config on disk: the
// record is no longer served and a consumer passes over it; the damaged stream is set aside
// and reported, and the rest of the store opens.
func TestDamagedFiles(t *testing.T) {
	dir := t.TempDir()
	st, err := tidelog.Open(dir, tidelog.WithManualMaintenance())
	if err != nil {
		t.Fatal(err)
	}
	s := must(st.CreateStream(tidelog.StreamConfig{Name: "s"})).of(t)
	for i := byte(1); i <= 5; i++ {
		must(s.Append("a", bytes.Repeat([]byte{i}, 64))).of(t)
	}
	must(st.CreateStream(tidelog.StreamConfig{Name: "broken"})).of(t)
	ok(t, st.Close())
	blocks, _ := filepath.Glob(filepath.Join(dir, "streams", "s", "*.blk"))
	var patched bool
	for _, path := range blocks {
		data := must(os.ReadFile(path)).of(t)
		if at := bytes.Index(data, bytes.Repeat([]byte{3}, 64)); at >= 0 {
			data[at+10] ^= 0xff
			ok(t, os.WriteFile(path, data, 0o644))
			patched = true
		}
	}
	if !patched {
		t.Fatal("message 3 not found on disk")
	}
	ok(t, os.WriteFile(filepath.Join(dir, "streams", "broken", "config"), []byte("{not json"), 0o644))

	st = openStore(t, dir, tidelog.WithManualMaintenance())
	damaged := must(st.DamagedStreams()).of(t)
	if len(damaged) != 1 || damaged[0].Name != "broken" || damaged[0].Reason == "" {
		t.Fatalf("DamagedStreams = %+v", damaged)
	}
	if names := must(st.StreamNames()).of(t); !slices.Equal(names, []string{"s"}) {
		t.Fatalf("StreamNames = %v", names)
	}
	s = must(st.Stream("s")).of(t)
	defer s.Close()
	if _, err := s.Load(3); !errors.Is(err, tidelog.ErrCorrupt) && !errors.Is(err, tidelog.ErrNotFound) {
		t.Fatalf("the damaged message loads: %v", err)
	}
	for _, q := range []uint64{1, 2, 4, 5} {
		if m := must(s.Load(q)).of(t); m.Payload[0] != byte(q) {
			t.Fatalf("message %d holds %v", q, m.Payload[:4])
		}
	}
	c := must(s.CreateConsumer(tidelog.ConsumerConfig{Name: "c"})).of(t)
	defer c.Close()
	if got := seqsOf(must(c.Fetch(10)).of(t)); !slices.Equal(got, []uint64{1, 2, 4, 5}) {
		t.Fatalf("delivered %v", got)
	}
	if got := must(c.Fetch(10)).of(t); len(got) != 0 {
		t.Fatalf("then %v", seqsOf(got))
	}
	// A damaged stream can be deleted to start over.
	ok(t, st.DeleteStream("broken"))
	if damaged := must(st.DamagedStreams()).of(t); len(damaged) != 0 {
		t.Fatalf("still damaged: %+v", damaged)
	}
}

func TestClosedHandles(t *testing.T) {
	st := must(tidelog.Open(t.TempDir())).of(t)
	s := must(st.CreateStream(tidelog.StreamConfig{Name: "s"})).of(t)
	c := must(s.CreateConsumer(tidelog.ConsumerConfig{Name: "c"})).of(t)
	must(s.Append("a", nil)).of(t)

	// A closed stream handle refuses calls; the stream itself stays.
	s2 := must(st.Stream("s")).of(t)
	ok(t, s2.Close())
	ok(t, s2.Close())
	_, err := s2.Append("a", nil)
	wantErr(t, err, tidelog.ErrClosed)
	_, err = s2.Load(1)
	wantErr(t, err, tidelog.ErrClosed)
	must(s.Load(1)).of(t)

	ok(t, st.Close())
	ok(t, st.Close())
	_, err = s.Append("a", nil)
	wantErr(t, err, tidelog.ErrClosed)
	_, err = s.State()
	wantErr(t, err, tidelog.ErrClosed)
	_, err = c.Fetch(1)
	wantErr(t, err, tidelog.ErrClosed)
	_, err = c.Ack(1)
	wantErr(t, err, tidelog.ErrClosed)
	_, err = st.Stream("s")
	wantErr(t, err, tidelog.ErrClosed)
	_, err = st.StreamNames()
	wantErr(t, err, tidelog.ErrClosed)
	// Store.Close freed the handles it left open: closing them again does nothing.
	ok(t, c.Close())
	ok(t, s.Close())
	_, err = c.State()
	wantErr(t, err, tidelog.ErrClosed)

	clock := tidelog.NewManualClock(t0)
	clock.Close()
	clock.Advance(time.Second)
	if !clock.Now().IsZero() {
		t.Fatal("a closed clock reads a time")
	}
	_, err = tidelog.Open(t.TempDir(), tidelog.WithClock(clock))
	wantErr(t, err, tidelog.ErrClosed)
}
