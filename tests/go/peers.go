// Package peers exists only to pin franz-go's version: scripts/peers/franz-go.sh runs
// `go test github.com/twmb/franz-go/pkg/kgo` from this module, so the suite that runs is the
// one go.mod and go.sum name, checked against the Go checksum database.
package peers

import _ "github.com/twmb/franz-go/pkg/kgo"
