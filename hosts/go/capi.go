package tidelog

// The C ABI is linked statically; helpers.c (compiled by cgo with this package) holds the
// few C helpers the Go side calls instead of the raw functions.

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: ${SRCDIR}/../../target/release/libtidelog.a -lgcc_s -lutil -lrt -lpthread -lm -ldl
#include "helpers.h"
*/
import "C"
