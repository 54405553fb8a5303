package api

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/queue"
)

type metrics struct {
	submitted *prometheus.CounterVec
	submitDur *prometheus.HistogramVec
	// rateLimited counts 429 answers, by limit (submit, read).
	rateLimited *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, c *arr.Client) (*metrics, error) {
	m := &metrics{
		submitted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "arr_submissions_total",
			Help: "Submit requests, by route and HTTP status code.",
		}, []string{"route", "code"}),
		submitDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "arr_submit_duration_seconds",
			Help:    "Time to answer submit requests (202 is sent after the operation is durable), by route.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12),
		}, []string{"route"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "arr_rate_limited_total",
			Help: "Requests answered 429 because their caller was over its rate, by limit (submit, read).",
		}, []string{"limit"}),
	}
	cs := []prometheus.Collector{m.submitted, m.submitDur, m.rateLimited, newQueueCollector(c.QueueStats)}
	if total, perTenant := c.StoredBytesBudgets(); total > 0 || perTenant > 0 {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "arr_stored_bytes",
			Help: "Bytes this process counts as stored for operations not yet deleted (requests and results), " +
				"for the stored-bytes budget; -1 until its first count from the store.",
		}, func() float64 {
			n, _, ok := c.StoredBytes("")
			if !ok {
				return -1
			}
			return float64(n)
		}))
		if total > 0 {
			cs = append(cs, prometheus.NewGauge(prometheus.GaugeOpts{
				Name: "arr_stored_bytes_budget", Help: "The stored-bytes budget of all operations (-max-stored-bytes).",
			}))
			cs[len(cs)-1].(prometheus.Gauge).Set(float64(total))
		}
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// queueCollector exports arr_queue_messages{state} from one read of the
// queue's Stats for its four states, reused for at least
// queueStatsMinInterval and for queueStatsReadShare times as long as the
// read took: a count can cost a scan of the queue (Azure Queue Storage's
// index), and a scraper polling /metrics often must not make the queue
// count itself without end. A failed read exports -1.
type queueCollector struct {
	stats func(context.Context) (queue.Stats, error)
	desc  *prometheus.Desc

	mu   sync.Mutex
	last queue.Stats
	err  error
	at   time.Time
	ttl  time.Duration
}

const (
	// queueStatsMinInterval is the least time a read of the queue's
	// Stats is reused for /metrics.
	queueStatsMinInterval = time.Second
	// queueStatsReadShare: a read is reused for this many times as long
	// as it took, when that is longer.
	queueStatsReadShare = 20
	// queueStatsTimeout bounds one read.
	queueStatsTimeout = 10 * time.Second
)

func newQueueCollector(stats func(context.Context) (queue.Stats, error)) *queueCollector {
	return &queueCollector{stats: stats, desc: prometheus.NewDesc("arr_queue_messages",
		"Messages in the queue, by state (read at most once a second; -1 when the read failed).", []string{"state"}, nil)}
}

func (q *queueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- q.desc }

func (q *queueCollector) Collect(ch chan<- prometheus.Metric) {
	st, err := q.read()
	for _, v := range []struct {
		state string
		n     int64
	}{{"ready", st.Ready}, {"delayed", st.Delayed}, {"inflight", st.InFlight}, {"dead", st.Dead}} {
		f := float64(v.n)
		if err != nil {
			f = -1
		}
		ch <- prometheus.MustNewConstMetric(q.desc, prometheus.GaugeValue, f, v.state)
	}
}

// read returns the last Stats if still fresh, else reads them (scrapes
// that come while one reads wait for it: one read at a time).
func (q *queueCollector) read() (queue.Stats, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.at.IsZero() && time.Since(q.at) < q.ttl {
		return q.last, q.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), queueStatsTimeout)
	defer cancel()
	start := time.Now()
	q.last, q.err = q.stats(ctx)
	q.at = time.Now()
	q.ttl = max(queueStatsMinInterval, queueStatsReadShare*q.at.Sub(start))
	return q.last, q.err
}
