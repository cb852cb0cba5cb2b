package tidelog_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tidelog"
)

// TestConcurrentAppendFetchAck runs appenders (single and batched), fetchers that ack
// through one shared consumer handle, readers and a watch at once: every message is
// delivered exactly once and the counts agree.
func TestConcurrentAppendFetchAck(t *testing.T) {
	st := openStore(t, t.TempDir())
	s := createStream(t, st, tidelog.StreamConfig{Name: "c", Durability: tidelog.DurabilityNone})
	c := must(s.CreateConsumer(tidelog.ConsumerConfig{Name: "w", AckWait: time.Hour, MaxAckPending: 100_000})).of(t)
	defer c.Close()

	const appenders, perAppender, batch = 4, 50, 20
	total := appenders * perAppender * batch
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := must(s.Watch(ctx, "c.>", tidelog.FromSeq(1))).of(t)

	var wg sync.WaitGroup
	for a := range appenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msgs := make([]tidelog.Message, batch)
			for i := range perAppender {
				if i%2 == 0 {
					for j := range msgs {
						msgs[j] = tidelog.Message{Subject: fmt.Sprintf("c.%d", a), Payload: []byte(fmt.Sprintf("%d-%d-%d", a, i, j))}
					}
					if _, err := s.AppendBatch(msgs); err != nil {
						t.Error(err)
						return
					}
				} else {
					for j := range batch {
						if _, err := s.Append(fmt.Sprintf("c.%d", a), []byte(fmt.Sprintf("%d-%d-%d", a, i, j))); err != nil {
							t.Error(err)
							return
						}
					}
				}
			}
		}()
	}
	var delivered sync.Map
	var acked atomic.Int64
	var fetchers sync.WaitGroup
	for range 3 {
		fetchers.Add(1)
		go func() {
			defer fetchers.Done()
			for acked.Load() < int64(total) {
				d, err := c.Fetch(64)
				if err != nil {
					t.Error(err)
					return
				}
				seqs := make([]uint64, 0, len(d))
				for i := range d {
					if _, dup := delivered.LoadOrStore(d[i].Seq, d[i].Subject); dup {
						t.Errorf("message %d delivered twice", d[i].Seq)
					}
					seqs = append(seqs, d[i].Seq)
				}
				if len(seqs) == 0 {
					time.Sleep(time.Millisecond)
					continue
				}
				n, err := c.AckBatch(seqs)
				if err != nil || n != len(seqs) {
					t.Errorf("AckBatch: %d of %d, %v", n, len(seqs), err)
					return
				}
				acked.Add(int64(n))
			}
		}()
	}
	var readers sync.WaitGroup
	stop := make(chan struct{})
	for range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for q := uint64(1); ; q++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.Load(q%uint64(total) + 1); err != nil && !errors.Is(err, tidelog.ErrNotFound) {
					t.Error(err)
					return
				}
				if _, err := s.State(); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	seen := 0
	for seen < total {
		m := recv(t, w)
		if uint64(seen+1) != m.Seq {
			t.Fatalf("the feed skipped: got %d after %d", m.Seq, seen)
		}
		seen++
	}
	wg.Wait()
	fetchers.Wait()
	close(stop)
	readers.Wait()
	if t.Failed() {
		return
	}
	state := must(c.State()).of(t)
	if state.NumAckPending != 0 || state.AckFloor.StreamSeq != uint64(total) || state.NumPending != 0 {
		t.Fatalf("consumer state %+v after %d messages", state, total)
	}
	if ss := must(s.State()).of(t); ss.Messages != uint64(total) {
		t.Fatalf("stream holds %d, want %d", ss.Messages, total)
	}
}

// TestCloseWhileInUse closes handles while other goroutines are calling through them: the
// calls either succeed or fail with ErrClosed, and nothing touches freed memory (run it with
// -race, and the C side under ASan in the library's own tests).
func TestCloseWhileInUse(t *testing.T) {
	for round := range 3 {
		st := must(tidelog.Open(t.TempDir())).of(t)
		s := must(st.CreateStream(tidelog.StreamConfig{Name: "s", Durability: tidelog.DurabilityNone})).of(t)
		other := must(st.Stream("s")).of(t)
		c := must(s.CreateConsumer(tidelog.ConsumerConfig{Name: "c", AckPolicy: tidelog.AckNone})).of(t)
		var wg sync.WaitGroup
		var calls atomic.Int64
		check := func(err error) bool {
			if err != nil && !errors.Is(err, tidelog.ErrClosed) {
				t.Errorf("round %d: %v", round, err)
			}
			calls.Add(1)
			return err == nil
		}
		for g := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				msgs := []tidelog.Message{{Subject: "a", Payload: []byte("x")}, {Subject: "b"}}
				for {
					var err error
					switch g % 3 {
					case 0:
						_, err = s.AppendBatch(msgs)
					case 1:
						_, err = other.Load(1)
						if errors.Is(err, tidelog.ErrNotFound) {
							err = nil
						}
					case 2:
						_, err = c.Fetch(10)
					}
					if !check(err) {
						return
					}
				}
			}()
		}
		for calls.Load() < 200 {
			time.Sleep(time.Millisecond)
		}
		// One stream handle goes first, then the store under everyone's feet.
		ok(t, other.Close())
		time.Sleep(5 * time.Millisecond)
		ok(t, st.Close())
		wg.Wait()
		_, err := s.Append("a", nil)
		wantErr(t, err, tidelog.ErrClosed)
		c.Close()
		s.Close()
	}
}
