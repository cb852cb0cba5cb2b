package tidelog_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"tidelog"
)

// The workload of benches/src/bin/append_rate.rs: one stream, payloads of 0x5a bytes, 1,000
// subjects "bench.s0".."bench.s999" taken round robin across the whole run, batches of
// batch messages, one goroutine.
type rateWorkload struct {
	messages   int
	payload    int
	batch      int
	durability tidelog.Durability
}

// appendRate runs the workload on a new store in dir and returns messages per second, timed
// as append_rate times it: from the stream's creation to the end of the final Sync.
func appendRate(dir string, w rateWorkload) (float64, time.Duration, error) {
	store, err := tidelog.Open(dir)
	if err != nil {
		return 0, 0, err
	}
	defer store.Close()
	s, err := store.CreateStream(tidelog.StreamConfig{Name: "rate", Durability: w.durability})
	if err != nil {
		return 0, 0, err
	}
	subjects := make([]string, 1000)
	for i := range subjects {
		subjects[i] = "bench.s" + strconv.Itoa(i)
	}
	payload := bytes.Repeat([]byte{0x5a}, w.payload)
	msgs := make([]tidelog.Message, w.batch)
	started := time.Now()
	for done := 0; done < w.messages; {
		n := min(w.messages-done, w.batch)
		batch := msgs[:n]
		for i := range batch {
			batch[i] = tidelog.Message{Subject: subjects[(done+i)%1000], Payload: payload}
		}
		if _, err := s.AppendBatch(batch); err != nil {
			return 0, 0, err
		}
		done += n
	}
	if err := s.Sync(); err != nil {
		return 0, 0, err
	}
	secs := time.Since(started)
	// Freed now rather than by the garbage collector, so that nothing of this round (open
	// files, I/O rings) is left to weigh on the next one.
	s.Close()
	if err := store.Close(); err != nil {
		return 0, 0, err
	}
	return float64(w.messages) / secs.Seconds(), secs, nil
}

// BenchmarkAppendBatch appends batches of 1,000 messages of 128 bytes (durability none, 1,000
// subjects round robin); one iteration is one batch.
func BenchmarkAppendBatch(b *testing.B) {
	store, err := tidelog.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	s, err := store.CreateStream(tidelog.StreamConfig{Name: "bench", Durability: tidelog.DurabilityNone})
	if err != nil {
		b.Fatal(err)
	}
	subjects := make([]string, 1000)
	for i := range subjects {
		subjects[i] = "bench.s" + strconv.Itoa(i)
	}
	payload := bytes.Repeat([]byte{0x5a}, 128)
	msgs := make([]tidelog.Message, 1000)
	b.SetBytes(int64(len(msgs) * len(payload)))
	b.ReportAllocs()
	b.ResetTimer()
	done := 0
	for b.Loop() {
		for i := range msgs {
			msgs[i] = tidelog.Message{Subject: subjects[(done+i)%1000], Payload: payload}
		}
		if _, err := s.AppendBatch(msgs); err != nil {
			b.Fatal(err)
		}
		done += len(msgs)
	}
	if err := s.Sync(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(done)/b.Elapsed().Seconds(), "msgs/s")
}

// rustRate runs the Rust reference binary on the same workload in dir.
func rustRate(bin, dir string, w rateWorkload) (float64, error) {
	dur := "none"
	if w.durability == tidelog.DurabilityAlways {
		dur = "always"
	}
	out, err := exec.Command(bin, "--dir", dir, "--messages", strconv.Itoa(w.messages),
		"--payload", strconv.Itoa(w.payload), "--batch", strconv.Itoa(w.batch), "--durability", dur).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return 0, fmt.Errorf("%s: %v: %s", bin, err, ee.Stderr)
		}
		return 0, err
	}
	var r struct {
		MsgsPerS float64 `json:"msgs_per_s"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, fmt.Errorf("%s printed %q: %v", bin, out, err)
	}
	return r.MsgsPerS, nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// compareRates alternates Go and Rust rounds on fresh directories of one file system and
// returns both medians.
func compareRates(t *testing.T, bin string, w rateWorkload, rounds int) (goMed, rustMed float64) {
	base := t.TempDir()
	var goRates, rustRates []float64
	for r := range rounds {
		dir := filepath.Join(base, fmt.Sprintf("go-%d", r))
		rate, secs, err := appendRate(dir, w)
		if err != nil {
			t.Fatalf("Go round %d: %v", r, err)
		}
		os.RemoveAll(dir)
		goRates = append(goRates, rate)
		dir = filepath.Join(base, fmt.Sprintf("rust-%d", r))
		rrate, err := rustRate(bin, dir, w)
		if err != nil {
			t.Fatalf("Rust round %d: %v", r, err)
		}
		os.RemoveAll(dir)
		rustRates = append(rustRates, rrate)
		t.Logf("round %d: Go %.0f msg/s (%v), Rust %.0f msg/s", r, rate, secs.Round(time.Millisecond), rrate)
	}
	return median(goRates), median(rustRates)
}

// TestBatchRateVsRust compares Stream.AppendBatch with the Rust API on append_rate's
// workload (TIDELOG_RUST_RATE_BIN names the binary: cargo build --release -p tidelog-benches
// --bin append_rate). It fails when Go's median rate with durability none is below
// TIDELOG_COMPARE_MIN (default 0.70) of Rust's; durability always is reported only.
func TestBatchRateVsRust(t *testing.T) {
	bin := os.Getenv("TIDELOG_RUST_RATE_BIN")
	if bin == "" {
		t.Skip("TIDELOG_RUST_RATE_BIN is not set")
	}
	threshold := 0.70
	if v := os.Getenv("TIDELOG_COMPARE_MIN"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			t.Fatalf("TIDELOG_COMPARE_MIN=%q: %v", v, err)
		}
		threshold = f
	}
	const rounds = 5
	w := rateWorkload{messages: 2_000_000, payload: 128, batch: 1000, durability: tidelog.DurabilityNone}
	goMed, rustMed := compareRates(t, bin, w, rounds)
	ratio := goMed / rustMed
	t.Logf("durability none: Go median %.0f msg/s, Rust median %.0f msg/s, ratio %.3f (minimum %.2f)",
		goMed, rustMed, ratio, threshold)

	w.durability = tidelog.DurabilityAlways
	goAlways, rustAlways := compareRates(t, bin, w, rounds)
	t.Logf("durability always (reported only): Go median %.0f msg/s, Rust median %.0f msg/s, ratio %.3f",
		goAlways, rustAlways, goAlways/rustAlways)

	if ratio < threshold {
		t.Errorf("Go's median batch append rate is %.1f%% of Rust's, below %.0f%%", ratio*100, threshold*100)
	}
}

// BenchmarkAppend measures the per-call cost of a single append (durability none).
func BenchmarkAppend(b *testing.B) {
	store, err := tidelog.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	s, err := store.CreateStream(tidelog.StreamConfig{Name: "bench", Durability: tidelog.DurabilityNone})
	if err != nil {
		b.Fatal(err)
	}
	payload := bytes.Repeat([]byte{0x5a}, 128)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Append("bench.s1", payload); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoad measures a load by sequence, copied into Go memory.
func BenchmarkLoad(b *testing.B) {
	store, err := tidelog.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	s, err := store.CreateStream(tidelog.StreamConfig{Name: "bench", Durability: tidelog.DurabilityNone})
	if err != nil {
		b.Fatal(err)
	}
	msgs := make([]tidelog.Message, 1000)
	for i := range msgs {
		msgs[i] = tidelog.Message{Subject: "bench.s" + strconv.Itoa(i), Payload: bytes.Repeat([]byte{0x5a}, 128)}
	}
	if _, err := s.AppendBatch(msgs); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	q := uint64(0)
	for b.Loop() {
		if _, err := s.Load(q%1000 + 1); err != nil {
			b.Fatal(err)
		}
		q++
	}
}

// BenchmarkFetchAck measures a fetch of 100 messages and their acknowledgement in one batch.
func BenchmarkFetchAck(b *testing.B) {
	store, err := tidelog.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	s, err := store.CreateStream(tidelog.StreamConfig{Name: "bench", Durability: tidelog.DurabilityNone})
	if err != nil {
		b.Fatal(err)
	}
	c, err := s.CreateConsumer(tidelog.ConsumerConfig{Name: "c", MaxAckPending: 10_000})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msgs := make([]tidelog.Message, 100)
	for i := range msgs {
		msgs[i] = tidelog.Message{Subject: "bench.s" + strconv.Itoa(i), Payload: bytes.Repeat([]byte{0x5a}, 128)}
	}
	seqs := make([]uint64, 0, 100)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		if _, err := s.AppendBatch(msgs); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		d, err := c.Fetch(100)
		if err != nil || len(d) != 100 {
			b.Fatalf("fetched %d: %v", len(d), err)
		}
		seqs = seqs[:0]
		for i := range d {
			seqs = append(seqs, d[i].Seq)
		}
		if _, err := c.AckBatch(seqs); err != nil {
			b.Fatal(err)
		}
	}
}
