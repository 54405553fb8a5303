package webhook

import (
	"encoding/json"
	"errors"
	"time"
)

// ContentType is the media type of a callback's body: a CloudEvent in
// structured mode, JSON.
const ContentType = "application/cloudevents+json; charset=utf-8"

// SpecVersion is the CloudEvents version of Event.
const SpecVersion = "1.0"

// Event is a CloudEvents 1.0 event whose data is JSON. Its JSON form
// (Marshal) is the structured-mode body of a callback; json.Unmarshal reads
// one back.
type Event struct {
	// SpecVersion is "1.0" (Marshal sets it when empty).
	SpecVersion string `json:"specversion"`
	// ID identifies the event: with Source, unique. A callback's ID is also
	// its webhook-id, the same on every attempt.
	ID string `json:"id"`
	// Source is a URI reference naming what produced the event.
	Source string `json:"source"`
	// Type says what happened, reverse-DNS style.
	Type string `json:"type"`
	// Subject names what the event is about within Source (an operation's
	// id).
	Subject string `json:"subject,omitempty"`
	// Time is when it happened; omitted when zero, else RFC 3339 in UTC.
	Time time.Time `json:"time,omitzero"`
	// DataContentType is "application/json" (Marshal sets it when empty and
	// Data is not).
	DataContentType string `json:"datacontenttype,omitempty"`
	// Data is the event's payload, JSON.
	Data json.RawMessage `json:"data,omitempty"`
}

// Marshal returns the event's structured-mode JSON, compact, with the
// defaults filled in. It fails when ID, Source or Type is empty, when
// SpecVersion is set to another version than "1.0", when DataContentType is
// set to something else than JSON, or when Data is not valid JSON.
func (e Event) Marshal() ([]byte, error) {
	switch {
	case e.ID == "" || e.Source == "" || e.Type == "":
		return nil, errors.New("webhook: a CloudEvent needs an id, a source and a type")
	case e.SpecVersion == "":
		e.SpecVersion = SpecVersion
	case e.SpecVersion != SpecVersion:
		return nil, errors.New("webhook: only CloudEvents 1.0 events are written")
	}
	switch e.DataContentType {
	case "":
		if len(e.Data) > 0 {
			e.DataContentType = "application/json"
		}
	case "application/json":
	default:
		return nil, errors.New("webhook: an Event's data is JSON")
	}
	if !e.Time.IsZero() {
		e.Time = e.Time.UTC()
	}
	return json.Marshal(e) // validates and compacts Data
}
