package main

import (
	"fmt"
	"io"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// The one logger, built in run, and the embedded server's adapter to it.

// newLogger is the one logger of the process: JSON lines on w, or a
// human-readable console format in development.
func newLogger(level string, development bool, w io.Writer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	var enc zapcore.Encoder
	if development {
		ec := zap.NewDevelopmentEncoderConfig()
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		ec := zap.NewProductionEncoderConfig()
		ec.EncodeTime = zapcore.RFC3339NanoTimeEncoder
		// Durations in milliseconds, as in the audit events (fields named
		// *_ms); metrics keep Prometheus's seconds.
		ec.EncodeDuration = zapcore.MillisDurationEncoder
		enc = zapcore.NewJSONEncoder(ec)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(w), lvl)), nil
}

// natsLogger sends the embedded server's log lines to zap.
type natsLogger struct{ s *zap.SugaredLogger }

func (l natsLogger) Noticef(format string, v ...any) { l.s.Infof(format, v...) }

func (l natsLogger) Warnf(format string, v ...any) { l.s.Warnf(format, v...) }

func (l natsLogger) Errorf(format string, v ...any) { l.s.Errorf(format, v...) }

func (l natsLogger) Fatalf(format string, v ...any) { l.s.Errorf(format, v...) }

func (l natsLogger) Debugf(format string, v ...any) { l.s.Debugf(format, v...) }

func (l natsLogger) Tracef(format string, v ...any) { l.s.Debugf(format, v...) }
