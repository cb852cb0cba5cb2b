package tidelog_test

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"tidelog"
)

// recv takes the next message of a watch, failing after a while.
func recv(t *testing.T, w *tidelog.Watch) *tidelog.Msg {
	t.Helper()
	select {
	case m, ok := <-w.C:
		if !ok {
			t.Fatalf("the feed ended: %v", w.Err())
		}
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message within 10 s")
	}
	return nil
}

// ended waits for a watch's channel to close and returns how long that took.
func ended(t *testing.T, w *tidelog.Watch) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-w.C:
			if !ok {
				return time.Since(start)
			}
		case <-deadline:
			t.Fatal("the feed did not end within 5 s")
		}
	}
}

// noLeaks waits until no C watcher is left and the goroutines are back to base.
func noLeaks(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		feeds, g := tidelog.LiveFeeds(), runtime.NumGoroutine()
		if feeds == 0 && g <= base {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d C watchers and %d goroutines (base %d) left", feeds, g, base)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWatchDeliversAndStopsOnCancel(t *testing.T) {
	base := runtime.NumGoroutine()
	st := openStore(t, t.TempDir())
	s := createStream(t, st, tidelog.StreamConfig{Name: "s", Durability: tidelog.DurabilityNone})
	for i := range 5 {
		must(s.Append("a."+string(rune('0'+i)), []byte{byte(i)})).of(t)
	}
	must(s.Append("b.x", nil)).of(t)
	ctx, cancel := context.WithCancel(context.Background())
	w := must(s.Watch(ctx, "a.>", tidelog.FromSeq(2))).of(t)
	for want := uint64(2); want <= 5; want++ {
		if m := recv(t, w); m.Seq != want {
			t.Fatalf("got %d, want %d", m.Seq, want)
		}
	}
	// New messages arrive while the feed waits on its descriptor.
	go func() {
		time.Sleep(20 * time.Millisecond)
		s.Append("b.y", nil)
		s.Append("a.new", []byte("late"))
	}()
	if m := recv(t, w); m.Subject != "a.new" || string(m.Payload) != "late" {
		t.Fatalf("got %+v", m)
	}
	// An idle feed stops at once when its context is cancelled, and frees its watcher.
	time.Sleep(20 * time.Millisecond)
	cancel()
	if took := ended(t, w); took > time.Second {
		t.Fatalf("the feed took %v to stop", took)
	}
	if !errors.Is(w.Err(), context.Canceled) {
		t.Fatalf("Err = %v", w.Err())
	}
	noLeaks(t, base)
}

func TestWatchFromLastPerSubjectAndNew(t *testing.T) {
	st := openStore(t, t.TempDir())
	s := createStream(t, st, tidelog.StreamConfig{Name: "kv", Durability: tidelog.DurabilityNone})
	must(s.Append("kv.a", []byte("1"))).of(t)
	must(s.Append("kv.b", []byte("1"))).of(t)
	must(s.Append("kv.a", []byte("2"))).of(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	last := must(s.Watch(ctx, "kv.*", tidelog.FromLastPerSubject())).of(t)
	fresh := must(s.Watch(ctx, "kv.*", tidelog.FromNew())).of(t)
	if m := recv(t, last); m.Seq != 2 {
		t.Fatalf("first of last-per-subject: %d", m.Seq)
	}
	if m := recv(t, last); m.Seq != 3 {
		t.Fatalf("second of last-per-subject: %d", m.Seq)
	}
	must(s.Append("kv.c", []byte("new"))).of(t)
	if m := recv(t, fresh); m.Seq != 4 {
		t.Fatalf("FromNew gave %d", m.Seq)
	}
	if m := recv(t, last); m.Seq != 4 {
		t.Fatalf("last-per-subject then gave %d", m.Seq)
	}
	_, err := s.Watch(ctx, "kv.>.x", tidelog.FromNew())
	wantErr(t, err, tidelog.ErrInvalidFilter)
}

func TestWatchEndsWhenStoreClosesOrStreamIsDeleted(t *testing.T) {
	base := runtime.NumGoroutine()
	st := must(tidelog.Open(t.TempDir())).of(t)
	s := must(st.CreateStream(tidelog.StreamConfig{Name: "gone"})).of(t)
	keep := must(st.CreateStream(tidelog.StreamConfig{Name: "keep"})).of(t)
	ctx := context.Background()
	w1 := must(s.Watch(ctx, ">", tidelog.FromNew())).of(t)
	w2 := must(keep.Watch(ctx, ">", tidelog.FromNew())).of(t)
	time.Sleep(20 * time.Millisecond)
	ok(t, st.DeleteStream("gone"))
	ended(t, w1)
	wantErr(t, w1.Err(), tidelog.ErrClosed)
	ok(t, st.Close())
	ended(t, w2)
	wantErr(t, w2.Err(), tidelog.ErrClosed)
	s.Close()
	keep.Close()
	noLeaks(t, base)
}

func TestFeedIterator(t *testing.T) {
	base := runtime.NumGoroutine()
	st := openStore(t, t.TempDir())
	s := createStream(t, st, tidelog.StreamConfig{Name: "s", Durability: tidelog.DurabilityNone})
	for range 10 {
		must(s.Append("x", nil)).of(t)
	}
	var got []uint64
	for m, err := range s.Feed(context.Background(), ">", tidelog.FromSeq(1)) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.Seq)
		if len(got) == 10 {
			break
		}
	}
	if len(got) != 10 || got[9] != 10 {
		t.Fatalf("iterated %v", got)
	}
	if n := tidelog.LiveFeeds(); n != 0 {
		t.Fatalf("%d watchers left after the loop", n)
	}
	// Cancelling the context ends a waiting loop quietly.
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		time.Sleep(30 * time.Millisecond)
		cancel()
	}()
	n := 0
	for _, err := range s.Feed(ctx, ">", tidelog.FromSeq(1)) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 10 {
		t.Fatalf("the cancelled loop saw %d messages", n)
	}
	for _, err := range s.Feed(context.Background(), "bad..filter", tidelog.FromNew()) {
		wantErr(t, err, tidelog.ErrInvalidFilter)
	}
	noLeaks(t, base)
}
