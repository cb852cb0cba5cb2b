package tidelog_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"tidelog"
)

// TestBatchIndexNamesTheMessageAtFault: a batch refused for one message's sake says which
// message it was, in Error.Index and in the message text, whether the library or the Go side
// found the fault; and nothing of the batch is stored.
func TestBatchIndexNamesTheMessageAtFault(t *testing.T) {
	st := openStore(t, t.TempDir(), tidelog.WithManualMaintenance())
	s := createStream(t, st, tidelog.StreamConfig{
		Name: "b", Subjects: []string{"b.>"}, MaxMsgSize: 100, Durability: tidelog.DurabilityNone,
		Dedup: tidelog.Dedup{Window: time.Hour, MaxIDs: 100},
	})
	must(s.AppendMsg(tidelog.Message{Subject: "b.0", MsgID: "seen"})).of(t)
	before := must(s.State()).of(t)
	digest := must(s.StateDigest()).of(t)

	good := func(n int) []tidelog.Message {
		msgs := make([]tidelog.Message, n)
		for i := range msgs {
			msgs[i] = tidelog.Message{Subject: "b.ok", Payload: []byte("x")}
		}
		return msgs
	}
	cases := []struct {
		name   string
		at     int
		bad    tidelog.Message
		want   error
		inText string
	}{
		{"invalid subject", 2, tidelog.Message{Subject: "b..x"}, tidelog.ErrInvalidSubject, "b..x"},
		{"too large", 1, tidelog.Message{Subject: "b.big", Payload: make([]byte, 200)}, tidelog.ErrTooLarge, "200"},
		{"subject not in stream", 3, tidelog.Message{Subject: "other"}, tidelog.ErrSubjectNotInStream, "other"},
		{"TTL not allowed", 2, tidelog.Message{Subject: "b.ttl", TTL: time.Second}, tidelog.ErrNotAllowed, "TTL"},
		{"msg id too long", 1, tidelog.Message{Subject: "b.id", MsgID: strings.Repeat("x", 256)}, tidelog.ErrInvalidMsgID, "256"},
		{"invalid expectation filter", 4, tidelog.Message{Subject: "b.f", Expect: tidelog.Expect{CheckLastSubjectSeq: true, Filter: "b.>.x"}}, tidelog.ErrInvalidFilter, "b.>.x"},
		{"control character in filter", 1, tidelog.Message{Subject: "b.f", Expect: tidelog.Expect{CheckLastSubjectSeq: true, Filter: "b.\x00"}}, tidelog.ErrInvalidFilter, "filter"},
		{"subject not UTF-8", 1, tidelog.Message{Subject: "b.\xff"}, tidelog.ErrInvalidArgument, "UTF-8"},
		{"filter not UTF-8", 2, tidelog.Message{Subject: "b.f", Expect: tidelog.Expect{Filter: "b.\xff"}}, tidelog.ErrInvalidArgument, "UTF-8"},
		{"duplicate id", 3, tidelog.Message{Subject: "b.d", MsgID: "seen"}, tidelog.ErrDuplicate, "duplicates"},
		{"the first message", 0, tidelog.Message{Subject: "other"}, tidelog.ErrSubjectNotInStream, "other"},
		// Found on the Go side, before the call.
		{"rollup", 2, tidelog.Message{Subject: "b.r", Rollup: tidelog.RollupSubject}, tidelog.ErrNotAllowed, "rollup"},
		{"TTL not whole seconds", 1, tidelog.Message{Subject: "b.t", TTL: 1500 * time.Millisecond}, tidelog.ErrInvalidTTL, "1.5s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msgs := good(5)
			msgs[tc.at] = tc.bad
			_, err := s.AppendBatch(msgs)
			e := wantErr(t, err, tc.want)
			if e.Index != uint64(tc.at) {
				t.Errorf("Index %d, want %d (%v)", e.Index, tc.at, err)
			}
			if p := "message " + strconv.Itoa(tc.at); !strings.HasPrefix(e.Message, p+":") && !strings.HasPrefix(e.Message, p+" of the batch") {
				t.Errorf("message %q does not name %s", e.Message, p)
			}
			if !strings.Contains(e.Message, tc.inText) {
				t.Errorf("message %q does not mention %q", e.Message, tc.inText)
			}
		})
	}
	// Two messages of the batch with one id: the second is at fault.
	msgs := good(4)
	msgs[1].MsgID, msgs[3].MsgID = "twice", "twice"
	_, err := s.AppendBatch(msgs)
	if e := wantErr(t, err, tidelog.ErrDuplicate); e.Index != 3 {
		t.Errorf("a repeated id in the batch names message %d, want 3 (%v)", e.Index, err)
	}
	if after := must(s.State()).of(t); after != before {
		t.Fatalf("refused batches changed the stream:\n%+v\n%+v", before, after)
	}
	if d := must(s.StateDigest()).of(t); d != digest {
		t.Fatal("refused batches changed the stream's digest")
	}
}

// TestBatchExpectationsPacked: expectations travel in the packed batch, each checked against
// the stream as the messages before it in the batch leave it, filters included.
func TestBatchExpectationsPacked(t *testing.T) {
	st := openStore(t, t.TempDir(), tidelog.WithManualMaintenance())
	s := createStream(t, st, tidelog.StreamConfig{Name: "x", Durability: tidelog.DurabilityNone})
	must(s.Append("x.a", []byte("1"))).of(t)
	must(s.Append("x.b", []byte("2"))).of(t)

	b := must(s.AppendBatch([]tidelog.Message{
		{Subject: "x.a", Payload: []byte("3"), Headers: []byte("NATS/1.0\r\nK: v\r\n\r\n"), MsgID: "m3",
			Expect: tidelog.Expect{CheckLastSeq: true, LastSeq: 2, CheckLastSubjectSeq: true, LastSubjectSeq: 1}},
		// The batch's own first message is the last of x.a and of the stream for the next.
		{Subject: "x.c", Payload: []byte("4"),
			Expect: tidelog.Expect{CheckLastSeq: true, LastSeq: 3, CheckLastSubjectSeq: true, LastSubjectSeq: 3, Filter: "x.a"}},
		{Subject: "x.c", Payload: []byte("5"), Expect: tidelog.Expect{CheckLastSubjectSeq: true, LastSubjectSeq: 4}},
		{Subject: "x.d", Payload: []byte("6"), Expect: tidelog.Expect{CheckLastSubjectSeq: true, LastSubjectSeq: 5, Filter: "x.*"}},
		// No message of x.z yet: its last subject sequence is 0.
		{Subject: "x.e", Payload: []byte("7"), Expect: tidelog.Expect{CheckLastSubjectSeq: true, LastSubjectSeq: 0, Filter: "x.z"}},
	})).of(t)
	if b.FirstSeq != 3 || b.LastSeq != 7 {
		t.Fatalf("AppendBatch = %+v", b)
	}
	for q := uint64(3); q <= 7; q++ {
		if m := must(s.Load(q)).of(t); string(m.Payload) != string(rune('0'+q)) {
			t.Fatalf("message %d holds %q", q, m.Payload)
		}
	}
	if m := must(s.Load(3)).of(t); m.MsgID != "m3" || m.Header("K") != "v" {
		t.Fatalf("message 3 lost its id or headers: %+v", m)
	}

	// A failed expectation anywhere refuses the whole batch, with the figures of the one that
	// failed. (Error.Index is not checked: the library leaves it 0 for a failed expectation,
	// though the header says a batch error's index names the message that failed.)
	before := must(s.State()).of(t)
	_, err := s.AppendBatch([]tidelog.Message{
		{Subject: "x.a", Expect: tidelog.Expect{CheckLastSeq: true, LastSeq: 7}},
		{Subject: "x.a", Expect: tidelog.Expect{CheckLastSeq: true, LastSeq: 8}},
		{Subject: "x.b", Expect: tidelog.Expect{CheckLastSeq: true, LastSeq: 8}},
	})
	e := wantErr(t, err, tidelog.ErrWrongLastSequence)
	if e.Expected != 8 || e.Current != 9 {
		t.Fatalf("expected/current %d/%d, want 8/9", e.Expected, e.Current)
	}
	_, err = s.AppendBatch([]tidelog.Message{
		{Subject: "x.a"},
		{Subject: "x.b", Expect: tidelog.Expect{CheckLastSubjectSeq: true, LastSubjectSeq: 3, Filter: "x.a"}},
	})
	e = wantErr(t, err, tidelog.ErrWrongLastSubjectSequence)
	if e.Expected != 3 || e.Current != 8 {
		t.Fatalf("expected/current %d/%d, want 3/8", e.Expected, e.Current)
	}
	if after := must(s.State()).of(t); after != before {
		t.Fatalf("refused batches changed the stream:\n%+v\n%+v", before, after)
	}
	// A single append takes the same expectations.
	_, err = s.AppendMsg(tidelog.Message{Subject: "x.f", Expect: tidelog.Expect{CheckLastSubjectSeq: true, LastSubjectSeq: 6, Filter: "x.d"}})
	ok(t, err)
	_, err = s.AppendMsg(tidelog.Message{Subject: "x.f", Expect: tidelog.Expect{CheckLastSubjectSeq: true, Filter: "x.>.y"}})
	if !errors.Is(err, tidelog.ErrInvalidFilter) {
		t.Fatalf("invalid filter: %v", err)
	}
}
