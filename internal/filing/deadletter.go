package filing

import (
	"strconv"

	"github.com/nats-io/nats.go"

	"github.com/qualfile/qualfile/messages"
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
	n, _ := strconv.Atoi(h.Get(messages.HeaderDeliveries))
	return DeadLetter{
		Sequence:        seq,
		Subject:         subject,
		RequestID:       h.Get(messages.HeaderRequestID),
		Reason:          h.Get(messages.HeaderDeadReason),
		Class:           h.Get(messages.HeaderDeadClass),
		OriginalSubject: h.Get(messages.HeaderOrigSubject),
		Deliveries:      n,
		DeadAt:          h.Get(messages.HeaderDeadAt),
		BodyObject:      h.Get(messages.HeaderBodyObject),
		Data:            data,
	}
}
