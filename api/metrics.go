package api

import (
	"context"

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
	depth := func(pick func(queue.Stats) int64) func() float64 {
		return func() float64 {
			st, err := c.QueueStats(context.Background())
			if err != nil {
				return -1
			}
			return float64(pick(st))
		}
	}
	cs := []prometheus.Collector{m.submitted, m.submitDur, m.rateLimited}
	for _, g := range []struct {
		state string
		pick  func(queue.Stats) int64
	}{
		{"ready", func(s queue.Stats) int64 { return s.Ready }},
		{"delayed", func(s queue.Stats) int64 { return s.Delayed }},
		{"inflight", func(s queue.Stats) int64 { return s.InFlight }},
		{"dead", func(s queue.Stats) int64 { return s.Dead }},
	} {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "arr_queue_messages",
			Help:        "Messages in the queue, by state.",
			ConstLabels: prometheus.Labels{"state": g.state},
		}, depth(g.pick)))
	}
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
