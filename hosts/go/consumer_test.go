package tidelog_test

import (
	"slices"
	"testing"
	"time"

	"tidelog"
)

func seqsOf(d []tidelog.Delivery) []uint64 {
	out := make([]uint64, len(d))
	for i := range d {
		out[i] = d[i].Seq
	}
	return out
}

// manualStore is a store on a hand-moved clock with no background maintenance, as the
// Rust consumer tests use.
func manualStore(t *testing.T) (*tidelog.Store, *tidelog.ManualClock) {
	clock := tidelog.NewManualClock(t0)
	t.Cleanup(clock.Close)
	return openStore(t, t.TempDir(), tidelog.WithClock(clock), tidelog.WithManualMaintenance()), clock
}

func TestConsumerFetchAckNakTerm(t *testing.T) {
	st, clock := manualStore(t)
	s := createStream(t, st, tidelog.StreamConfig{Name: "s"})
	for i := range 10 {
		must(s.Append("work."+string(rune('a'+i%2)), []byte{byte(i)})).of(t)
	}
	c := must(s.CreateConsumer(tidelog.ConsumerConfig{
		Name: "c", Filters: []string{"work.a"}, AckWait: 10 * time.Second, MaxDeliver: 3,
	})).of(t)
	defer c.Close()
	d := must(c.Fetch(3)).of(t)
	if got := seqsOf(d); !slices.Equal(got, []uint64{1, 3, 5}) {
		t.Fatalf("first fetch %v", got)
	}
	if d[0].DeliveryCount != 1 || d[0].DeliverySeq != 1 || d[2].DeliverySeq != 3 || d[1].Payload[0] != 2 {
		t.Fatalf("deliveries %+v", d)
	}
	if o := must(c.Ack(1)).of(t); o != tidelog.AckDone {
		t.Fatalf("Ack = %v", o)
	}
	if o := must(c.Ack(1)).of(t); o != tidelog.AckNotPending {
		t.Fatalf("second Ack = %v", o)
	}
	must(c.Nak(3, 0)).of(t)
	must(c.Term(5)).of(t)
	again := must(c.Fetch(10)).of(t)
	if got := seqsOf(again); !slices.Equal(got, []uint64{3, 7, 9}) {
		t.Fatalf("after nak: %v", got)
	}
	if again[0].DeliveryCount != 2 {
		t.Fatalf("redelivery count %d", again[0].DeliveryCount)
	}
	st1 := must(c.State()).of(t)
	// The floor passes over message 2, which the filter does not take.
	if st1.NumAckPending != 3 || st1.NumRedelivered != 1 || st1.AckFloor.StreamSeq != 2 || st1.Delivered.StreamSeq != 9 {
		t.Fatalf("state %+v", st1)
	}
	// A nak with a delay waits for the clock; in-progress restarts the ack wait.
	must(c.Nak(7, 5*time.Second)).of(t)
	must(c.InProgress(9)).of(t)
	if got := must(c.Fetch(10)).of(t); len(got) != 0 {
		t.Fatalf("nothing is due yet: %v", seqsOf(got))
	}
	clock.Advance(5 * time.Second)
	if got := seqsOf(must(c.Fetch(10)).of(t)); !slices.Equal(got, []uint64{7}) {
		t.Fatalf("after the nak delay: %v", got)
	}
	clock.Advance(10 * time.Second)
	// Redeliveries come in the order they fell due.
	if got := seqsOf(must(c.Fetch(10)).of(t)); !slices.Equal(got, []uint64{3, 9, 7}) {
		t.Fatalf("after the ack wait: %v", got)
	}
	n := must(c.AckBatch([]uint64{3, 7, 9, 42})).of(t)
	if n != 3 {
		t.Fatalf("AckBatch applied %d", n)
	}
	st2 := must(c.State()).of(t)
	if st2.NumAckPending != 0 || st2.NumPending != 0 || st2.AckFloor.StreamSeq != 9 {
		t.Fatalf("state %+v", st2)
	}

	// A second handle sees the same consumer; names list it.
	c2 := must(s.Consumer("c")).of(t)
	defer c2.Close()
	if st3 := must(c2.State()).of(t); st3 != st2 {
		t.Fatalf("second handle: %+v", st3)
	}
	if names := must(s.ConsumerNames()).of(t); !slices.Equal(names, []string{"c"}) {
		t.Fatalf("ConsumerNames = %v", names)
	}
	if js := must(c.ConfigJSON()).of(t); len(js) == 0 {
		t.Fatal("empty consumer config")
	}
}

func TestConsumerPoliciesAndBatchKinds(t *testing.T) {
	st, clock := manualStore(t)
	s := createStream(t, st, tidelog.StreamConfig{Name: "s"})
	for i, subj := range []string{"a", "b", "a", "c", "b"} {
		_ = i
		must(s.Append(subj, nil)).of(t)
		clock.Advance(time.Second)
	}
	cases := []struct {
		cfg  tidelog.ConsumerConfig
		want []uint64
	}{
		{tidelog.ConsumerConfig{Deliver: tidelog.DeliverAll}, []uint64{1, 2, 3, 4, 5}},
		{tidelog.ConsumerConfig{Deliver: tidelog.DeliverLast}, []uint64{5}},
		{tidelog.ConsumerConfig{Deliver: tidelog.DeliverLastPerSubject}, []uint64{3, 4, 5}},
		{tidelog.ConsumerConfig{Deliver: tidelog.DeliverNew}, nil},
		{tidelog.ConsumerConfig{Deliver: tidelog.DeliverByStartSeq, StartSeq: 4}, []uint64{4, 5}},
		{tidelog.ConsumerConfig{Deliver: tidelog.DeliverByStartTime, StartTime: t0.Add(2 * time.Second)}, []uint64{3, 4, 5}},
	}
	for i, tc := range cases {
		tc.cfg.Name = "p" + string(rune('0'+i))
		c := must(s.CreateConsumer(tc.cfg)).of(t)
		if got := seqsOf(must(c.Fetch(100)).of(t)); !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
			t.Fatalf("policy %d delivered %v, want %v", tc.cfg.Deliver, got, tc.want)
		}
		c.Close()
	}

	c := must(s.CreateConsumer(tidelog.ConsumerConfig{Name: "k", Backoff: []time.Duration{time.Second, 2 * time.Second}, MaxDeliver: 3})).of(t)
	defer c.Close()
	must(c.Fetch(5)).of(t)
	if n := must(c.ApplyBatch(tidelog.KindNak, []uint64{1, 2}, 3*time.Second)).of(t); n != 2 {
		t.Fatalf("nak batch applied %d", n)
	}
	if n := must(c.ApplyBatch(tidelog.KindTerm, []uint64{3}, 0)).of(t); n != 1 {
		t.Fatalf("term batch applied %d", n)
	}
	if n := must(c.ApplyBatch(tidelog.KindInProgress, []uint64{4, 5}, 0)).of(t); n != 2 {
		t.Fatalf("in-progress batch applied %d", n)
	}
	clock.Advance(3 * time.Second)
	got := seqsOf(must(c.Fetch(5)).of(t))
	if !slices.Contains(got, 1) || !slices.Contains(got, 2) || slices.Contains(got, 3) {
		t.Fatalf("after the nak delay: %v", got)
	}
	_, err := c.ApplyBatch(tidelog.AckKind(9), []uint64{1}, 0)
	wantErr(t, err, tidelog.ErrInvalidArgument)

	none := must(s.CreateConsumer(tidelog.ConsumerConfig{Name: "none", AckPolicy: tidelog.AckNone})).of(t)
	defer none.Close()
	must(none.Fetch(5)).of(t)
	if st := must(none.State()).of(t); st.AckFloor.StreamSeq != 5 || st.NumAckPending != 0 {
		t.Fatalf("ack none state %+v", st)
	}
	all := must(s.CreateConsumer(tidelog.ConsumerConfig{Name: "all", AckPolicy: tidelog.AckAll})).of(t)
	defer all.Close()
	must(all.Fetch(5)).of(t)
	must(all.Ack(3)).of(t)
	if st := must(all.State()).of(t); st.AckFloor.StreamSeq != 3 || st.NumAckPending != 2 {
		t.Fatalf("ack all state %+v", st)
	}
}

func TestWorkQueueRetention(t *testing.T) {
	st, _ := manualStore(t)
	s := createStream(t, st, tidelog.StreamConfig{Name: "w", Retention: tidelog.WorkQueueRetention})
	c := must(s.CreateConsumer(tidelog.ConsumerConfig{Name: "c", Filters: []string{"jobs.*"}})).of(t)
	defer c.Close()
	_, err := s.CreateConsumer(tidelog.ConsumerConfig{Name: "d", Filters: []string{"jobs.eu"}})
	wantErr(t, err, tidelog.ErrConfig)
	for range 3 {
		must(s.Append("jobs.eu", nil)).of(t)
	}
	d := must(c.Fetch(10)).of(t)
	must(c.Ack(d[1].Seq)).of(t)
	if st := must(s.State()).of(t); st.Messages != 2 {
		t.Fatalf("an acked job stayed: %+v", st)
	}
	must(c.Term(d[0].Seq)).of(t)
	if st := must(s.State()).of(t); st.Messages != 1 {
		t.Fatalf("a termed job stayed: %+v", st)
	}
}
