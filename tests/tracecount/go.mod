module goprobe.dev/tracecount

go 1.21
