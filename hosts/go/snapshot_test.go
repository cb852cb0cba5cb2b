package tidelog_test

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"testing"
	"testing/iotest"

	"tidelog"
)

func fillSnapshotSource(t *testing.T) (*tidelog.Store, *tidelog.Stream) {
	st := openStore(t, t.TempDir())
	s := createStream(t, st, tidelog.StreamConfig{Name: "orders", Durability: tidelog.DurabilityNone})
	msgs := make([]tidelog.Message, 500)
	for i := range msgs {
		msgs[i] = tidelog.Message{Subject: "orders." + string(rune('a'+i%5)), Payload: bytes.Repeat([]byte{byte(i)}, 100)}
	}
	must(s.AppendBatch(msgs)).of(t)
	ok(t, s.Remove(7))
	c := must(s.CreateConsumer(tidelog.ConsumerConfig{Name: "c"})).of(t)
	defer c.Close()
	must(c.Fetch(3)).of(t)
	must(c.Ack(1)).of(t)
	return st, s
}

func checkRestored(t *testing.T, r *tidelog.Stream, info tidelog.SnapshotInfo) {
	t.Helper()
	if r.Name() != "orders" {
		t.Fatalf("restored stream is named %q", r.Name())
	}
	if info.Messages != 499 || info.LastSeq != 500 || info.Bytes == 0 {
		t.Fatalf("restore info %+v", info)
	}
	state := must(r.State()).of(t)
	if state.Messages != 499 || state.LastSeq != 500 {
		t.Fatalf("restored state %+v", state)
	}
	if _, err := r.Load(7); !errors.Is(err, tidelog.ErrNotFound) {
		t.Fatalf("removed message came back: %v", err)
	}
	m := must(r.Load(42)).of(t)
	if !bytes.Equal(m.Payload, bytes.Repeat([]byte{41}, 100)) || m.Subject != "orders.b" {
		t.Fatalf("message 42 restored as %+v", m)
	}
	if names := must(r.ConsumerNames()).of(t); !slices.Equal(names, []string{"c"}) {
		t.Fatalf("restored consumers %v", names)
	}
}

func TestSnapshotRestoreThroughWriterAndReader(t *testing.T) {
	_, s := fillSnapshotSource(t)
	var buf bytes.Buffer
	info := must(s.Snapshot(&buf, 0)).of(t)
	if info.Bytes != uint64(buf.Len()) || info.Messages != 499 {
		t.Fatalf("snapshot info %+v for %d bytes", info, buf.Len())
	}
	dst := openStore(t, t.TempDir())
	// A reader that hands out one byte at a time, and EOF with the last bytes, still works.
	r, rinfo, err := dst.Restore(iotest.DataErrReader(iotest.OneByteReader(bytes.NewReader(buf.Bytes()))))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	checkRestored(t, r, rinfo)
}

func TestSnapshotRestoreFile(t *testing.T) {
	_, s := fillSnapshotSource(t)
	path := filepath.Join(t.TempDir(), "orders.snap")
	must(s.SnapshotFile(path, 0)).of(t)
	dst := openStore(t, t.TempDir())
	r, info, err := dst.RestoreFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	checkRestored(t, r, info)
}

type failingWriter struct{ after int }

var errDiskGone = errors.New("disk gone")

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.after <= 0 {
		return 0, errDiskGone
	}
	w.after--
	return len(p), nil
}

func TestSnapshotCallbackFailures(t *testing.T) {
	st, s := fillSnapshotSource(t)
	_, err := s.Snapshot(&failingWriter{after: 1}, 0)
	wantErr(t, err, tidelog.ErrCallback)
	if !errors.Is(err, errDiskGone) {
		t.Fatalf("%v does not wrap the writer's error", err)
	}
	var buf bytes.Buffer
	must(s.Snapshot(&buf, 0)).of(t)
	dst := openStore(t, t.TempDir())
	_, _, err = dst.Restore(iotest.TimeoutReader(bytes.NewReader(buf.Bytes())))
	wantErr(t, err, tidelog.ErrCallback)
	if !errors.Is(err, iotest.ErrTimeout) {
		t.Fatalf("%v does not wrap the reader's error", err)
	}
	// A truncated snapshot is refused as damaged; the source is untouched.
	_, _, err = dst.Restore(io.LimitReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()/2)))
	if err == nil {
		t.Fatal("a truncated snapshot was restored")
	}
	if _, err := st.Stream("orders"); err != nil {
		t.Fatal(err)
	}
	// A damaged snapshot is refused as such.
	damaged := bytes.Clone(buf.Bytes())
	damaged[len(damaged)/2] ^= 0xff
	_, _, err = dst.Restore(bytes.NewReader(damaged))
	wantErr(t, err, tidelog.ErrCorrupt)
	// A panicking writer's panic reaches the caller, not the library.
	func() {
		defer func() {
			if p := recover(); p != "boom" {
				t.Fatalf("recovered %v", p)
			}
		}()
		s.Snapshot(panicWriter{}, 0)
		t.Fatal("no panic")
	}()
	// The stream still works after all that.
	must(s.Append("orders.z", nil)).of(t)
}

type panicWriter struct{}

func (panicWriter) Write([]byte) (int, error) { panic("boom") }
