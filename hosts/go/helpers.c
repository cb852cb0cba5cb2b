// C helpers of the Go package: they fold the calls a Go method needs into one cgo
// transition, and build the pointer arrays the ABI takes in C memory, so that Go memory handed
// to C never holds Go pointers.

#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "_cgo_export.h"

// Splits n NUL-terminated strings laid end to end into an array of pointers (free it).
static const char **tl_split(const char *packed, size_t n) {
	const char **v = malloc(sizeof(char *) * (n ? n : 1));
	if (v == NULL) {
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		v[i] = packed;
		packed += strlen(packed) + 1;
	}
	return v;
}

enum tidelog_status tl_stream_config_set_subjects(tidelog_stream_config *cfg, const char *packed, size_t n) {
	const char **v = tl_split(packed, n);
	if (v == NULL) {
		return TIDELOG_STATUS_PANIC;
	}
	tidelog_status st = tidelog_stream_config_set_subjects(cfg, v, n);
	free(v);
	return st;
}

enum tidelog_status tl_consumer_config_set_filters(tidelog_consumer_config *cfg, const char *packed, size_t n) {
	const char **v = tl_split(packed, n);
	if (v == NULL) {
		return TIDELOG_STATUS_PANIC;
	}
	tidelog_status st = tidelog_consumer_config_set_filters(cfg, v, n);
	free(v);
	return st;
}

enum tidelog_status tl_multi_last_seqs(const tidelog_stream *s, const char *packed, size_t n, uint64_t up_to,
		uint64_t *seqs, size_t cap, size_t *len, tidelog_error *err) {
	const char **v = tl_split(packed, n);
	if (v == NULL) {
		return TIDELOG_STATUS_PANIC;
	}
	tidelog_status st = tidelog_stream_multi_last_seqs(s, v, n, up_to, seqs, cap, len, err);
	free(v);
	return st;
}

// The failure recorded in err: its details, and its message.
const char *tl_error(const tidelog_error *err, tidelog_error_info *info) {
	*info = tidelog_error_get_info(err);
	return tidelog_error_message(err);
}

// Views *m and, when its bytes fit in buf (subject, headers, payload and id back to back),
// copies them there and frees the message, setting *m to NULL.
static void tl_take(tidelog_msg **m, tidelog_msg_view *v, uint8_t *buf, size_t cap) {
	*v = tidelog_msg_get_view(*m);
	size_t need = v->subject_len + v->headers_len + v->payload_len + v->msg_id_len;
	if (need > cap) {
		return;
	}
	uint8_t *p = buf;
	if (v->subject_len) { memcpy(p, v->subject, v->subject_len); p += v->subject_len; }
	if (v->headers_len) { memcpy(p, v->headers, v->headers_len); p += v->headers_len; }
	if (v->payload_len) { memcpy(p, v->payload, v->payload_len); p += v->payload_len; }
	if (v->msg_id_len) { memcpy(p, v->msg_id, v->msg_id_len); }
	tidelog_msg_free(*m);
	*m = NULL;
}

enum tidelog_status tl_load(const tidelog_stream *s, int op, const char *filter, uint64_t seq,
		tidelog_msg **m, tidelog_msg_view *v, uint8_t *buf, size_t cap, tidelog_error *err) {
	tidelog_status st;
	switch (op) {
	case TL_LOAD: st = tidelog_stream_load(s, seq, m, err); break;
	case TL_LOAD_NEXT: st = tidelog_stream_load_next(s, filter, seq, m, err); break;
	case TL_LOAD_PREV: st = tidelog_stream_load_prev(s, filter, seq, m, err); break;
	default: st = tidelog_stream_load_last(s, filter, m, err); break;
	}
	if (st == TIDELOG_STATUS_OK) {
		tl_take(m, v, buf, cap);
	}
	return st;
}

enum tidelog_status tl_watcher_next(const tidelog_watcher *w, uint32_t timeout_ms,
		tidelog_msg **m, tidelog_msg_view *v, uint8_t *buf, size_t cap, tidelog_error *err) {
	tidelog_status st = tidelog_watcher_next(w, timeout_ms, m, err);
	if (st == TIDELOG_STATUS_OK) {
		tl_take(m, v, buf, cap);
	}
	return st;
}

// A fetch and its items in one call; an empty result is freed at once.
enum tidelog_status tl_fetch(const tidelog_consumer *c, size_t max_msgs, size_t max_bytes,
		tidelog_deliveries **out, const tidelog_delivery **items, size_t *n, tidelog_error *err) {
	tidelog_status st = tidelog_consumer_fetch(c, max_msgs, max_bytes, out, err);
	if (st != TIDELOG_STATUS_OK) {
		return st;
	}
	*items = tidelog_deliveries_items(*out, n);
	if (*n == 0) {
		tidelog_deliveries_free(*out);
		*out = NULL;
	}
	return st;
}

// One message with everything tidelog_message can say, built here so that its pointers
// (into Go memory, valid for this call only) never sit in Go memory.
enum tidelog_status tl_append_msg(const tidelog_stream *s, int raw, uint64_t raw_seq, int64_t raw_ts,
		const char *subject, size_t subject_len, const uint8_t *headers, size_t headers_len,
		const uint8_t *payload, size_t payload_len, uint64_t ttl, uint32_t rollup,
		const uint8_t *msg_id, size_t msg_id_len, uint32_t expect, uint64_t expect_last_seq,
		uint64_t expect_last_subject_seq, const char *expect_filter, size_t expect_filter_len,
		tidelog_appended *out, tidelog_error *err) {
	tidelog_message m;
	memset(&m, 0, sizeof m);
	m.subject = subject;
	m.subject_len = subject_len;
	m.headers = headers;
	m.headers_len = headers_len;
	m.payload = payload;
	m.payload_len = payload_len;
	m.ttl = ttl;
	m.rollup = rollup;
	m.msg_id = msg_id;
	m.msg_id_len = msg_id_len;
	m.expect = expect;
	m.expect_last_seq = expect_last_seq;
	m.expect_last_subject_seq = expect_last_subject_seq;
	m.expect_filter = expect_filter;
	m.expect_filter_len = expect_filter_len;
	if (raw) {
		return tidelog_stream_append_raw(s, raw_seq, raw_ts, &m, err);
	}
	return tidelog_stream_append_msg(s, &m, out, err);
}

// Snapshots and restores through the Go callbacks of snapshot.go; handle is the cgo.Handle of
// the writer or reader, carried as the callbacks' user pointer.
static int32_t tl_write_cb(void *user, const uint8_t *buf, size_t len) {
	return tlSnapshotWrite((uintptr_t)user, (uint8_t *)buf, len);
}

static int32_t tl_read_cb(void *user, uint8_t *buf, size_t cap, size_t *len) {
	return tlRestoreRead((uintptr_t)user, buf, cap, len);
}

enum tidelog_status tl_snapshot(const tidelog_stream *s, uint64_t from_seq, uintptr_t handle,
		tidelog_snapshot_info *out, tidelog_error *err) {
	return tidelog_stream_snapshot(s, from_seq, tl_write_cb, (void *)handle, out, err);
}

enum tidelog_status tl_restore(const tidelog_store *store, uintptr_t handle, tidelog_stream **stream_out,
		tidelog_snapshot_info *out, tidelog_error *err) {
	return tidelog_store_restore(store, tl_read_cb, (void *)handle, stream_out, out, err);
}
