package tidelog

/*
#include "helpers.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// The exported constants spell out the ABI's values so that their documentation reads as
// numbers; each is checked against the header here, where a difference fails the build
// (a constant index out of range).
var (
	_ = [1]struct{}{}[StatusOK-C.TIDELOG_STATUS_OK]
	_ = [1]struct{}{}[StatusNullArgument-C.TIDELOG_STATUS_NULL_ARGUMENT]
	_ = [1]struct{}{}[StatusInvalidArgument-C.TIDELOG_STATUS_INVALID_ARGUMENT]
	_ = [1]struct{}{}[StatusPanic-C.TIDELOG_STATUS_PANIC]
	_ = [1]struct{}{}[StatusConfig-C.TIDELOG_STATUS_CONFIG]
	_ = [1]struct{}{}[StatusInvalidName-C.TIDELOG_STATUS_INVALID_NAME]
	_ = [1]struct{}{}[StatusInvalidSubject-C.TIDELOG_STATUS_INVALID_SUBJECT]
	_ = [1]struct{}{}[StatusInvalidFilter-C.TIDELOG_STATUS_INVALID_FILTER]
	_ = [1]struct{}{}[StatusNotFound-C.TIDELOG_STATUS_NOT_FOUND]
	_ = [1]struct{}{}[StatusStreamNotFound-C.TIDELOG_STATUS_STREAM_NOT_FOUND]
	_ = [1]struct{}{}[StatusStreamExists-C.TIDELOG_STATUS_STREAM_EXISTS]
	_ = [1]struct{}{}[StatusConsumerNotFound-C.TIDELOG_STATUS_CONSUMER_NOT_FOUND]
	_ = [1]struct{}{}[StatusConsumerExists-C.TIDELOG_STATUS_CONSUMER_EXISTS]
	_ = [1]struct{}{}[StatusConsumerDeleted-C.TIDELOG_STATUS_CONSUMER_DELETED]
	_ = [1]struct{}{}[StatusTooLarge-C.TIDELOG_STATUS_TOO_LARGE]
	_ = [1]struct{}{}[StatusSubjectNotInStream-C.TIDELOG_STATUS_SUBJECT_NOT_IN_STREAM]
	_ = [1]struct{}{}[StatusSequenceNotAfterLast-C.TIDELOG_STATUS_SEQUENCE_NOT_AFTER_LAST]
	_ = [1]struct{}{}[StatusEmptyBatch-C.TIDELOG_STATUS_EMPTY_BATCH]
	_ = [1]struct{}{}[StatusWrongLastSequence-C.TIDELOG_STATUS_WRONG_LAST_SEQUENCE]
	_ = [1]struct{}{}[StatusWrongLastSubjectSequence-C.TIDELOG_STATUS_WRONG_LAST_SUBJECT_SEQUENCE]
	_ = [1]struct{}{}[StatusNotAllowed-C.TIDELOG_STATUS_NOT_ALLOWED]
	_ = [1]struct{}{}[StatusInvalidMsgID-C.TIDELOG_STATUS_INVALID_MSG_ID]
	_ = [1]struct{}{}[StatusDuplicate-C.TIDELOG_STATUS_DUPLICATE]
	_ = [1]struct{}{}[StatusInvalidTTL-C.TIDELOG_STATUS_INVALID_TTL]
	_ = [1]struct{}{}[StatusLimitReached-C.TIDELOG_STATUS_LIMIT_REACHED]
	_ = [1]struct{}{}[StatusStorageFull-C.TIDELOG_STATUS_STORAGE_FULL]
	_ = [1]struct{}{}[StatusIO-C.TIDELOG_STATUS_IO]
	_ = [1]struct{}{}[StatusPoisoned-C.TIDELOG_STATUS_POISONED]
	_ = [1]struct{}{}[StatusCorrupt-C.TIDELOG_STATUS_CORRUPT]
	_ = [1]struct{}{}[StatusLocked-C.TIDELOG_STATUS_LOCKED]
	_ = [1]struct{}{}[StatusClosed-C.TIDELOG_STATUS_CLOSED]
	_ = [1]struct{}{}[StatusTimeout-C.TIDELOG_STATUS_TIMEOUT]
	_ = [1]struct{}{}[StatusTooManyResults-C.TIDELOG_STATUS_TOO_MANY_RESULTS]
	_ = [1]struct{}{}[StatusInvalidSequence-C.TIDELOG_STATUS_INVALID_SEQUENCE]
	_ = [1]struct{}{}[StatusCallback-C.TIDELOG_STATUS_CALLBACK]
	_ = [1]struct{}{}[IOAuto-C.TIDELOG_IO_CHOICE_AUTO]
	_ = [1]struct{}{}[IOUring-C.TIDELOG_IO_CHOICE_IO_URING]
	_ = [1]struct{}{}[IOPwrite-C.TIDELOG_IO_CHOICE_PWRITE]
	_ = [1]struct{}{}[BackendIOUring-C.TIDELOG_IO_BACKEND_IO_URING]
	_ = [1]struct{}{}[BackendPwrite-C.TIDELOG_IO_BACKEND_PWRITE]
	_ = [1]struct{}{}[BackendMemory-C.TIDELOG_IO_BACKEND_MEMORY]
	_ = [1]struct{}{}[FileStorage-C.TIDELOG_STORAGE_FILE]
	_ = [1]struct{}{}[MemoryStorage-C.TIDELOG_STORAGE_MEMORY]
	_ = [1]struct{}{}[DurabilityAlways-C.TIDELOG_DURABILITY_ALWAYS]
	_ = [1]struct{}{}[DurabilityInterval-C.TIDELOG_DURABILITY_INTERVAL]
	_ = [1]struct{}{}[DurabilityNone-C.TIDELOG_DURABILITY_NONE]
	_ = [1]struct{}{}[DiscardOld-C.TIDELOG_DISCARD_OLD]
	_ = [1]struct{}{}[DiscardNew-C.TIDELOG_DISCARD_NEW]
	_ = [1]struct{}{}[DiscardNewPerSubject-C.TIDELOG_DISCARD_NEW_PER_SUBJECT]
	_ = [1]struct{}{}[LimitsRetention-C.TIDELOG_RETENTION_LIMITS]
	_ = [1]struct{}{}[InterestRetention-C.TIDELOG_RETENTION_INTEREST]
	_ = [1]struct{}{}[WorkQueueRetention-C.TIDELOG_RETENTION_WORK_QUEUE]
	_ = [1]struct{}{}[DeliverAll-C.TIDELOG_DELIVER_ALL]
	_ = [1]struct{}{}[DeliverLast-C.TIDELOG_DELIVER_LAST]
	_ = [1]struct{}{}[DeliverLastPerSubject-C.TIDELOG_DELIVER_LAST_PER_SUBJECT]
	_ = [1]struct{}{}[DeliverNew-C.TIDELOG_DELIVER_NEW]
	_ = [1]struct{}{}[DeliverByStartSeq-C.TIDELOG_DELIVER_BY_START_SEQ]
	_ = [1]struct{}{}[DeliverByStartTime-C.TIDELOG_DELIVER_BY_START_TIME]
	_ = [1]struct{}{}[RollupNone-C.TIDELOG_ROLLUP_NONE]
	_ = [1]struct{}{}[RollupSubject-C.TIDELOG_ROLLUP_SUBJECT]
	_ = [1]struct{}{}[RollupAll-C.TIDELOG_ROLLUP_ALL]
	_ = [1]struct{}{}[BoundByStream-C.TIDELOG_BOUND_BY_STREAM]
	_ = [1]struct{}{}[BoundByStore-C.TIDELOG_BOUND_BY_STORE]
	_ = [1]struct{}{}[AckDone-C.TIDELOG_ACK_OUTCOME_DONE]
	_ = [1]struct{}{}[AckNotPending-C.TIDELOG_ACK_OUTCOME_NOT_PENDING]
	_ = [1]struct{}{}[KindAck-C.TIDELOG_ACK_KIND_ACK]
	_ = [1]struct{}{}[KindNak-C.TIDELOG_ACK_KIND_NAK]
	_ = [1]struct{}{}[KindTerm-C.TIDELOG_ACK_KIND_TERM]
	_ = [1]struct{}{}[KindInProgress-C.TIDELOG_ACK_KIND_IN_PROGRESS]
)

// The entries of a packed batch are filled field by field in batch.go; a field added to the
// header would compile and be left zero. Their size and last field's offset are pinned here,
// so a change of layout fails the build until pack is reviewed.
var (
	_ = [1]struct{}{}[unsafe.Sizeof(C.tidelog_packed_message{})-48]
	_ = [1]struct{}{}[unsafe.Offsetof(C.tidelog_packed_message{}.expect_last_subject_seq)-40]
)

// Version is the linked library's version, such as "0.1.0".
func Version() string { return C.GoString(C.tidelog_version()) }

func init() {
	// The header this package was built with must describe the library it links.
	if v := C.tidelog_abi_version(); v != C.TIDELOG_ABI_VERSION {
		panic(fmt.Sprintf("tidelog: the library has ABI version %d, the header %d", v, C.TIDELOG_ABI_VERSION))
	}
}
