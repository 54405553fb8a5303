package webhook

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func TestEventMarshal(t *testing.T) {
	paris := time.FixedZone("CET", 3600)
	e := Event{
		ID:      "cb_01",
		Source:  "https://arr.example/v1/operations",
		Type:    "dev.arr.operation.succeeded",
		Subject: "op_42",
		Time:    time.Date(2026, 12, 6, 14, 15, 16, 500_000_000, paris),
		Data:    json.RawMessage(`{ "id": "op_42",  "status": "succeeded" }`),
	}
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"specversion":"1.0","id":"cb_01","source":"https://arr.example/v1/operations","type":"dev.arr.operation.succeeded","subject":"op_42","time":"2026-12-06T13:15:16.5Z","datacontenttype":"application/json","data":{"id":"op_42","status":"succeeded"}}`
	if string(b) != want {
		t.Fatalf("Marshal =\n%s\nwant\n%s", b, want)
	}
	var back Event
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	e.SpecVersion, e.DataContentType = "1.0", "application/json"
	e.Data = json.RawMessage(`{"id":"op_42","status":"succeeded"}`)
	if !back.Time.Equal(e.Time) {
		t.Fatalf("time read back %v, want %v", back.Time, e.Time)
	}
	back.Time, e.Time = time.Time{}, time.Time{}
	if !reflect.DeepEqual(back, e) {
		t.Fatalf("read back %+v, want %+v", back, e)
	}
}

func TestEventMarshalMinimal(t *testing.T) {
	b, err := Event{ID: "1", Source: "/x", Type: "t"}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"specversion":"1.0","id":"1","source":"/x","type":"t"}` {
		t.Fatalf("Marshal = %s", b)
	}
}

func TestEventMarshalErrors(t *testing.T) {
	ok := Event{ID: "1", Source: "/x", Type: "t", Data: json.RawMessage(`{}`)}
	for name, e := range map[string]Event{
		"no id":        {Source: "/x", Type: "t"},
		"no source":    {ID: "1", Type: "t"},
		"no type":      {ID: "1", Source: "/x"},
		"version 0.3":  func() Event { e := ok; e.SpecVersion = "0.3"; return e }(),
		"not json":     func() Event { e := ok; e.Data = json.RawMessage(`{"a":`); return e }(),
		"text content": func() Event { e := ok; e.DataContentType = "text/plain"; return e }(),
	} {
		if b, err := e.Marshal(); err == nil {
			t.Errorf("%s: Marshal = %s, want an error", name, b)
		}
	}
	if _, err := ok.Marshal(); err != nil {
		t.Fatalf("the valid event: %v", err)
	}
}
