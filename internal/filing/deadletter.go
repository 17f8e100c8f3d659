package filing

import (
	"strconv"

	"github.com/nats-io/nats.go"
)

// Dead-letter headers. The body of a dead letter is the original request,
// byte for byte, so that it can be replayed.
const (
	HeaderDeadReason   = "Qualfile-Dead-Reason"
	HeaderDeadClass    = "Qualfile-Dead-Class"
	HeaderRequestID    = "Qualfile-Request-Id"
	HeaderOrigSubject  = "Qualfile-Original-Subject"
	HeaderOrigSequence = "Qualfile-Original-Sequence"
	HeaderDeliveries   = "Qualfile-Deliveries"
	HeaderDeadAt       = "Qualfile-Dead-At"
)

// DeadLetter is one message of the dead-letter stream, as read back by an
// operator's tool.
type DeadLetter struct {
	Sequence        uint64 // in the dead-letter stream
	Subject         string
	RequestID       string
	Reason          string
	Class           string
	OriginalSubject string
	Deliveries      int
	DeadAt          string
	BodyObject      string // the body is in the object store under this name
	Data            []byte
}

// ParseDeadLetter reads a dead letter's headers.
func ParseDeadLetter(seq uint64, subject string, h nats.Header, data []byte) DeadLetter {
	n, _ := strconv.Atoi(h.Get(HeaderDeliveries))
	return DeadLetter{
		Sequence:        seq,
		Subject:         subject,
		RequestID:       h.Get(HeaderRequestID),
		Reason:          h.Get(HeaderDeadReason),
		Class:           h.Get(HeaderDeadClass),
		OriginalSubject: h.Get(HeaderOrigSubject),
		Deliveries:      n,
		DeadAt:          h.Get(HeaderDeadAt),
		BodyObject:      h.Get(HeaderBodyObject),
		Data:            data,
	}
}
