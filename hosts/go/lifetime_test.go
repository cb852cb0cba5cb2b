package tidelog_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tidelog"
)

// openFiles lists the files under dir this process holds open.
func openFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	var out []string
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err == nil && strings.HasPrefix(target, dir+string(filepath.Separator)) {
			out = append(out, target)
		}
	}
	return out
}

func noOpenFiles(t *testing.T, dir, when string) {
	t.Helper()
	if files := openFiles(t, dir); len(files) != 0 {
		t.Fatalf("%s, still open: %v", when, files)
	}
}

// TestDeletedStreamRefuses: once its stream is deleted, the library refuses every call on a
// stream or consumer handle with ErrClosed (the handles are still open on the Go side, so
// the library is the one answering), and freeing the handles releases the deleted files.
func TestDeletedStreamRefuses(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir, tidelog.WithManualMaintenance())
	s := must(st.CreateStream(tidelog.StreamConfig{Name: "gone", AllowMsgTTL: true})).of(t)
	c := must(s.CreateConsumer(tidelog.ConsumerConfig{Name: "c"})).of(t)
	must(s.Append("a", []byte("x"))).of(t)
	d := must(c.Fetch(1)).of(t)
	ok(t, st.DeleteStream("gone"))

	refused := func(what string, err error) {
		t.Helper()
		e := wantErr(t, err, tidelog.ErrClosed)
		if strings.Contains(e.Message, "handle") {
			t.Fatalf("%s: refused on the Go side (%v), not by the library", what, err)
		}
	}
	_, err := c.Fetch(1)
	refused("Fetch", err)
	_, err = c.Ack(d[0].Seq)
	refused("Ack", err)
	_, err = c.Nak(d[0].Seq, 0)
	refused("Nak", err)
	_, err = c.AckBatch([]uint64{d[0].Seq})
	refused("AckBatch", err)
	_, err = c.State()
	refused("consumer State", err)
	_, err = s.Consumer("c")
	refused("Consumer", err)
	refused("DeleteConsumer", s.DeleteConsumer("c"))
	_, err = s.CreateConsumer(tidelog.ConsumerConfig{Name: "new"})
	refused("CreateConsumer", err)
	_, err = s.Watch(context.Background(), ">", tidelog.FromSeq(1))
	refused("Watch", err)
	_, err = s.Append("a", nil)
	refused("Append", err)
	_, err = s.AppendBatch([]tidelog.Message{{Subject: "a"}})
	refused("AppendBatch", err)
	refused("Sync", s.Sync())
	refused("Checkpoint", s.Checkpoint())
	refused("EnforceLimits", s.EnforceLimits())
	_, err = s.Reclaim()
	refused("Reclaim", err)
	_, err = s.ExpireNow()
	refused("ExpireNow", err)
	_, err = s.State()
	refused("State", err)
	_, err = s.StateDigest()
	refused("StateDigest", err)
	_, err = s.Verify()
	refused("Verify", err)
	_, err = s.RecoveryReport()
	refused("RecoveryReport", err)

	// The store goes on; a stream of the same name is a new one.
	if names := must(st.StreamNames()).of(t); len(names) != 0 {
		t.Fatalf("StreamNames = %v", names)
	}
	again := createStream(t, st, tidelog.StreamConfig{Name: "gone"})
	if n := must(again.State()).of(t).Messages; n != 0 {
		t.Fatalf("the new stream holds %d messages", n)
	}
	// The old handles may hold the deleted files open until they are freed.
	c.Close()
	s.Close()
	for _, f := range openFiles(t, dir) {
		if strings.Contains(f, "(deleted)") || strings.Contains(f, ".deleted") {
			t.Fatalf("the deleted stream's files are still open: %v", openFiles(t, dir))
		}
	}
}

// TestClosingReleasesFiles: a stream's files stay open only while handles of it live. A
// stream with consumers whose handles are all closed lets go of its files once deleted
// (consumers and stream no longer hold each other); Store.Close frees the handles it still
// tracks, the consumers' included, so nothing under the directory stays open and the
// directory can be opened again.
func TestClosingReleasesFiles(t *testing.T) {
	dir := t.TempDir()
	st := must(tidelog.Open(dir, tidelog.WithManualMaintenance())).of(t)

	// Deleted with its handles already closed.
	s := must(st.CreateStream(tidelog.StreamConfig{Name: "tmp"})).of(t)
	c := must(s.CreateConsumer(tidelog.ConsumerConfig{Name: "c"})).of(t)
	must(s.Append("a", []byte("x"))).of(t)
	must(c.Fetch(1)).of(t)
	c.Close()
	s.Close()
	ok(t, st.DeleteStream("tmp"))
	for _, f := range openFiles(t, dir) {
		if strings.Contains(strings.TrimPrefix(f, dir), "tmp") {
			t.Fatalf("the deleted stream's files are still open: %v", openFiles(t, dir))
		}
	}

	// Left open by the host: closed by Store.Close.
	kept := must(st.CreateStream(tidelog.StreamConfig{Name: "kept"})).of(t)
	second := must(st.Stream("kept")).of(t)
	k := must(kept.CreateConsumer(tidelog.ConsumerConfig{Name: "k"})).of(t)
	k2 := must(second.Consumer("k")).of(t)
	must(kept.Append("a", []byte("x"))).of(t)
	must(k.Fetch(1)).of(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := must(kept.Watch(ctx, ">", tidelog.FromSeq(1))).of(t)
	recv(t, w)
	if len(openFiles(t, dir)) == 0 {
		t.Fatal("no file of the store is open while it is")
	}
	ok(t, st.Close())
	if d := ended(t, w); d > time.Second {
		t.Fatalf("the watch ended %v after Close", d)
	}
	if !errors.Is(w.Err(), tidelog.ErrClosed) {
		t.Fatalf("the watch ended with %v", w.Err())
	}
	noOpenFiles(t, dir, "after Store.Close")
	for _, err := range []error{
		func() error { _, err := kept.Append("a", nil); return err }(),
		func() error { _, err := second.Load(1); return err }(),
		func() error { _, err := k.Fetch(1); return err }(),
		func() error { _, err := k2.State(); return err }(),
	} {
		wantErr(t, err, tidelog.ErrClosed)
	}
	ok(t, kept.Close())
	ok(t, k.Close())

	// The directory opens again, with what was saved at Close.
	st = openStore(t, dir, tidelog.WithManualMaintenance())
	kept = must(st.Stream("kept")).of(t)
	defer kept.Close()
	k = must(kept.Consumer("k")).of(t)
	defer k.Close()
	if state := must(k.State()).of(t); state.Delivered.StreamSeq != 1 || state.NumAckPending != 1 {
		t.Fatalf("the consumer's state after reopen: %+v", state)
	}
}
