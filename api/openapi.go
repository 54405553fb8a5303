package api

import (
	_ "embed"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
)

// openAPI describes arr's own paths and the seed's routes.
//
//go:embed openapi.json
var openAPI []byte

// openAPIFor returns the OpenAPI document of a server with routes: the
// static one, plus an entry for every submit route it does not describe
// (the configured routes), with its path parameters and media types. Every
// submit (and retry) is marked x-ms-long-running-operation, with
// final-state-via location.
func openAPIFor(routes []*route) ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		return nil, err
	}
	paths := doc["paths"].(map[string]any)
	for _, rt := range routes {
		path := wildcard.ReplaceAllStringFunc(rt.path, func(w string) string { return strings.Replace(w, "...", "", 1) })
		if rt.Seed || rt.path == "/v1/echo" && rt.Name == "echo" {
			continue
		}
		item, _ := paths[path].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[path] = item
		}
		var params []any
		for _, m := range wildcard.FindAllStringSubmatch(rt.path, -1) {
			params = append(params, map[string]any{"name": strings.TrimSuffix(m[1], "..."), "in": "path", "required": true,
				"schema": map[string]any{"type": "string"}})
		}
		params = append(params, map[string]any{"$ref": "#/components/parameters/IdempotencyKey"},
			map[string]any{"$ref": "#/components/parameters/Prefer"}, map[string]any{"$ref": "#/components/parameters/CallbackUrl"})
		content := map[string]any{}
		for _, mt := range rt.MediaTypes {
			content[mt] = map[string]any{"schema": map[string]any{}}
		}
		if len(content) == 0 {
			content["*/*"] = map[string]any{"schema": map[string]any{}}
		}
		op := map[string]any{
			"summary":     "Submit an operation run by the route " + rt.Name,
			"operationId": rt.Name,
			// A long-running operation, as code generators (AutoRest,
			// the Azure SDKs) read it: the final GET is the 202's
			// Location, the status-code URL, which answers with the
			// result or with the failure, whatever the method.
			"x-ms-long-running-operation":         true,
			"x-ms-long-running-operation-options": map[string]any{"final-state-via": "location"},
			"parameters":                          params,
			"requestBody":                         map[string]any{"required": false, "content": content},
			"responses": map[string]any{
				"202": map[string]any{"$ref": "#/components/responses/Accepted"},
				"303": map[string]any{"$ref": "#/components/responses/Finished"},
				"400": map[string]any{"$ref": "#/components/responses/Problem"},
				"413": map[string]any{"$ref": "#/components/responses/Problem"},
				"415": map[string]any{"$ref": "#/components/responses/Problem"},
				"422": map[string]any{"$ref": "#/components/responses/Problem"},
				"429": map[string]any{"$ref": "#/components/responses/Problem"},
				"431": map[string]any{"$ref": "#/components/responses/Problem"},
				"503": map[string]any{"$ref": "#/components/responses/Problem"},
				"507": map[string]any{"$ref": "#/components/responses/Problem"},
			},
		}
		methods := []string{rt.method}
		if rt.method == "*" {
			methods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}
		}
		for _, m := range methods {
			item[strings.ToLower(m)] = op
		}
	}
	return json.MarshalIndent(doc, "", "  ")
}

// wildcard matches a ServeMux wildcard, {name} or {name...}.
var wildcard = regexp.MustCompile(`\{([^}]*)\}`)
