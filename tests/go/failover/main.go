// Command failover is issue 13's client check for franz-go: an idempotent acks=all producer
// writes through the SIGKILL of a partition leader of a 3-node tidelog cluster, and a consumer
// then reads every acknowledged record back. The application must see no error at all: franz-go
// retries what is retriable (NOT_LEADER_OR_FOLLOWER, a refused connection) by itself.
//
//	KGO_SEEDS=host:port,... TIDELOG_PIDS=pid1,pid2,pid3 go run ./failover
//
// TIDELOG_PIDS lists the nodes' process ids in node id order. It prints one FAILOVER line
// with the counts and exits 1 if any record failed, was lost, or came back twice.
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	topic      = "franz-failover"
	partitions = 3
	records    = 4000
)

func fail(format string, args ...any) {
	fmt.Printf("FAILOVER failed: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	seeds := strings.Split(os.Getenv("KGO_SEEDS"), ",")
	var pids []int
	for _, p := range strings.Split(os.Getenv("TIDELOG_PIDS"), ",") {
		pid, err := strconv.Atoi(p)
		if err != nil {
			fail("TIDELOG_PIDS: %v", err)
		}
		pids = append(pids, pid)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	admin, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		fail("client: %v", err)
	}
	defer admin.Close()
	create := kmsg.NewPtrCreateTopicsRequest()
	t := kmsg.NewCreateTopicsRequestTopic()
	t.Topic, t.NumPartitions, t.ReplicationFactor = topic, partitions, 3
	c := kmsg.NewCreateTopicsRequestTopicConfig()
	c.Name, c.Value = "min.insync.replicas", kmsg.StringPtr("2")
	t.Configs = append(t.Configs, c)
	create.Topics = append(create.Topics, t)
	create.TimeoutMillis = 15000
	// INVALID_REPLICATION_FACTOR until all three brokers have registered.
	for {
		resp, err := create.RequestWith(ctx, admin)
		if err == nil && resp.Topics[0].ErrorCode == 0 {
			break
		}
		if ctx.Err() != nil {
			fail("create topic: %v %+v", err, resp)
		}
		time.Sleep(200 * time.Millisecond)
	}
	leader := waitInSync(ctx, admin)

	producer, err := kgo.NewClient(
		kgo.SeedBrokers(seeds...),
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(2*time.Minute),
	)
	if err != nil {
		fail("producer: %v", err)
	}
	var (
		mu     sync.Mutex
		acked  = map[string]bool{}
		errs   []error
		wg     sync.WaitGroup
		killed time.Time
	)
	for i := 0; i < records; i++ {
		if i == records/2 {
			// Half acknowledged: kill the leader of partition 0 while the rest is produced.
			if err := producer.Flush(ctx); err != nil {
				fail("flush: %v", err)
			}
			killed = time.Now()
			if err := syscall.Kill(pids[leader-1], syscall.SIGKILL); err != nil {
				fail("kill node %d: %v", leader, err)
			}
		}
		v := fmt.Sprintf("f%d", i)
		wg.Add(1)
		producer.Produce(ctx, &kgo.Record{Key: []byte(v), Value: []byte(v)}, func(r *kgo.Record, err error) {
			defer wg.Done()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			} else {
				acked[string(r.Value)] = true
			}
		})
	}
	wg.Wait()
	producer.Close()
	took := time.Since(killed)

	survivor := 0
	for i := range seeds {
		if i+1 != leader {
			survivor = i
			break
		}
	}
	consumer, err := kgo.NewClient(
		kgo.SeedBrokers(seeds[survivor]),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		fail("consumer: %v", err)
	}
	defer consumer.Close()
	seen := map[string]int{}
	for len(seen) < len(acked) && ctx.Err() == nil {
		fetches := consumer.PollFetches(ctx)
		fetches.EachRecord(func(r *kgo.Record) { seen[string(r.Value)]++ })
	}
	lost, doubled := 0, 0
	for v := range acked {
		switch seen[v] {
		case 0:
			lost++
		case 1:
		default:
			doubled++
		}
	}
	fmt.Printf("FAILOVER leader %d SIGKILLed: acked %d, errors %d, lost %d, duplicated %d, second half produced in %d ms\n",
		leader, len(acked), len(errs), lost, doubled, took.Milliseconds())
	if len(errs) > 0 {
		fail("application-visible errors, e.g. %v", errs[0])
	}
	if len(acked) != records || lost > 0 || doubled > 0 {
		fail("acked %d of %d, lost %d, duplicated %d", len(acked), records, lost, doubled)
	}
}

// waitInSync waits until every partition of the topic has a leader and three in-sync replicas;
// it returns the leader of partition 0.
func waitInSync(ctx context.Context, cl *kgo.Client) int {
	for ctx.Err() == nil {
		req := kmsg.NewPtrMetadataRequest()
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(topic)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err == nil && len(resp.Topics) == 1 && len(resp.Topics[0].Partitions) == partitions {
			ready, leader := true, 0
			for _, p := range resp.Topics[0].Partitions {
				ready = ready && p.ErrorCode == 0 && p.Leader >= 0 && len(p.ISR) == 3
				if p.Partition == 0 {
					leader = int(p.Leader)
				}
			}
			if ready {
				return leader
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	fail("the topic's replicas never all came in sync")
	return 0
}
