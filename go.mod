module github.com/qualfile/qualfile

go 1.26.8

require (
	github.com/cenkalti/backoff/v4 v4.3.0 // indirect
	golang.org/x/sync v0.24.0 // indirect
)
