#ifndef TIDELOG_GO_HELPERS_H
#define TIDELOG_GO_HELPERS_H

#include "tidelog.h"

// Operations of tl_load.
enum { TL_LOAD = 0, TL_LOAD_NEXT = 1, TL_LOAD_PREV = 2, TL_LOAD_LAST = 3 };

enum tidelog_status tl_stream_config_set_subjects(tidelog_stream_config *cfg, const char *packed, size_t n);
enum tidelog_status tl_consumer_config_set_filters(tidelog_consumer_config *cfg, const char *packed, size_t n);
enum tidelog_status tl_multi_last_seqs(const tidelog_stream *s, const char *packed, size_t n, uint64_t up_to,
		uint64_t *seqs, size_t cap, size_t *len, tidelog_error *err);
const char *tl_error(const tidelog_error *err, tidelog_error_info *info);
enum tidelog_status tl_load(const tidelog_stream *s, int op, const char *filter, uint64_t seq,
		tidelog_msg **m, tidelog_msg_view *v, uint8_t *buf, size_t cap, tidelog_error *err);
enum tidelog_status tl_watcher_next(const tidelog_watcher *w, uint32_t timeout_ms,
		tidelog_msg **m, tidelog_msg_view *v, uint8_t *buf, size_t cap, tidelog_error *err);
enum tidelog_status tl_fetch(const tidelog_consumer *c, size_t max_msgs, size_t max_bytes,
		tidelog_deliveries **out, const tidelog_delivery **items, size_t *n, tidelog_error *err);
enum tidelog_status tl_append_msg(const tidelog_stream *s, int raw, uint64_t raw_seq, int64_t raw_ts,
		const char *subject, size_t subject_len, const uint8_t *headers, size_t headers_len,
		const uint8_t *payload, size_t payload_len, uint64_t ttl, uint32_t rollup,
		const uint8_t *msg_id, size_t msg_id_len, uint32_t expect, uint64_t expect_last_seq,
		uint64_t expect_last_subject_seq, const char *expect_filter, size_t expect_filter_len,
		tidelog_appended *out, tidelog_error *err);
enum tidelog_status tl_snapshot(const tidelog_stream *s, uint64_t from_seq, uintptr_t handle,
		tidelog_snapshot_info *out, tidelog_error *err);
enum tidelog_status tl_restore(const tidelog_store *store, uintptr_t handle, tidelog_stream **stream_out,
		tidelog_snapshot_info *out, tidelog_error *err);

#endif
