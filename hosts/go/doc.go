// Package tidelog is the Go binding of tidelog, an embeddable, log-structured message store,
// over its C ABI (include/tidelog.h), linked statically from target/release/libtidelog.a.
//
// A Store is a directory of named streams; a Stream keeps subject-addressed messages
// numbered by sequences that are never reused; a Consumer is a cursor over a stream with
// acknowledgements and redelivery; Stream.Watch and Stream.Feed are change feeds.
//
//	store, err := tidelog.Open(dir)
//	orders, err := store.CreateStream(tidelog.StreamConfig{Name: "orders"})
//	a, err := orders.Append("orders.eu.42", []byte(`{"qty":1}`))
//	msg, err := orders.Load(a.Seq)
//
// # Errors
//
// Failed calls return an *Error carrying the library's status and details. Compare with
// the sentinels: errors.Is(err, tidelog.ErrStorageFull).
//
// # Concurrency and lifetime
//
// Stores, streams, consumers and clocks are safe for concurrent use by any number of
// goroutines. Every handle guards its C object: Close waits for the calls in flight on it,
// and calls made after Close return an error matching ErrClosed instead of touching freed
// memory. Closing a Store waits for calls on its streams and consumers too, ends the watches
// of its streams, and closes the stream and consumer handles still open. Handles that become
// unreachable are freed by the garbage collector, but Close them to release files and memory
// at a known time.
//
// No Go pointer is kept by the library: messages are copied into Go memory before the C
// objects holding them are freed, and batches cross as one buffer of bytes plus one slice
// of lengths.
package tidelog
