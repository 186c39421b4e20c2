// Command golden is the golden flow on franz-go: produce three records per codec with the
// idempotent producer, then read them back in a consumer group (range balancer) and commit.
// tests/fixtures/golden/capture.py runs it and sets BOOTSTRAP.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

const topic = "golden"

// pad keeps every batch worth compressing, as in the other clients' flows.
var pad = strings.Repeat(".", 100)

func main() {
	bootstrap := os.Getenv("BOOTSTRAP")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	codecs := []struct {
		name  string
		codec kgo.CompressionCodec
	}{
		{"none", kgo.NoCompression()},
		{"gzip", kgo.GzipCompression()},
		{"snappy", kgo.SnappyCompression()},
		{"lz4", kgo.Lz4Compression()},
		{"zstd", kgo.ZstdCompression()},
	}
	ts0 := time.UnixMilli(1_700_000_000_000)
	for _, c := range codecs {
		cl, err := kgo.NewClient(
			kgo.SeedBrokers(bootstrap),
			kgo.ClientID("golden-franz-go"),
			kgo.ProducerBatchCompression(c.codec),
			kgo.RecordPartitioner(kgo.ManualPartitioner()),
			kgo.ProducerLinger(50*time.Millisecond),
			kgo.AllowAutoTopicCreation(),
		)
		if err != nil {
			fail(err)
		}
		for i := 0; i < 3; i++ {
			r := &kgo.Record{
				Topic:     topic,
				Partition: 0,
				Key:       []byte(fmt.Sprintf("k%d", i)),
				Value:     []byte(fmt.Sprintf("%s-%d%s", c.name, i, pad)),
				Headers:   []kgo.RecordHeader{{Key: "h", Value: []byte(fmt.Sprintf("x%d", i))}},
				Timestamp: ts0.Add(time.Duration(i) * time.Millisecond),
			}
			cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
				if err != nil {
					fail(err)
				}
			})
		}
		if err := cl.Flush(ctx); err != nil {
			fail(err)
		}
		cl.Close()
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(bootstrap),
		kgo.ClientID("golden-franz-go"),
		kgo.ConsumerGroup("golden-group"),
		kgo.ConsumeTopics(topic),
		kgo.Balancers(kgo.RangeBalancer()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.WithLogger(kgo.BasicLogger(os.Stderr, kgo.LogLevelWarn, nil)),
	)
	if err != nil {
		fail(err)
	}
	want, got := 3*len(codecs), 0
	for got < want {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			fail(fmt.Errorf("read %d of %d records: %w", got, want, ctx.Err()))
		}
		got += fetches.NumRecords()
	}
	if err := cl.CommitUncommittedOffsets(ctx); err != nil {
		fail(err)
	}
	cl.LeaveGroup()
	cl.Close()
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "golden:", err)
	os.Exit(1)
}
