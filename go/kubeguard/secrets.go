package kubeguard

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
)

// hideSecretValues is the hook of the secrets routes under --kube-hide-secrets:
// the API server is asked for JSON only, and every object in its answer
// (a Secret, a list's items, a watch event's object, a Table row's object)
// has each value of data and stringData replaced by "" (keys kept; "" is
// valid base64 for data), and its last-applied-configuration annotation
// (which `kubectl apply` fills with the whole object, values included)
// redacted the same way. An answer that is not JSON is not served.
//
// Why rewrite Accept rather than decode protobuf: the guard then needs
// only one decoder, and every client the API server serves can take JSON.
type hideSecretValues struct{}

const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// Request keeps of the client's Accept only the JSON media types, with
// their parameters (kubectl's `as=Table` asks for a Table in JSON):
// protobuf and CBOR, which this hook cannot read, are dropped.
func (hideSecretValues) Request(out *http.Request) {
	var keep []string
	for _, v := range out.Header.Values("Accept") {
		for _, t := range strings.Split(v, ",") {
			if mt, _, err := mime.ParseMediaType(t); err == nil && (mt == "application/json" || mt == "*/*" || mt == "application/*") {
				keep = append(keep, strings.TrimSpace(t))
			}
		}
	}
	if len(keep) == 0 {
		keep = []string{"application/json"}
	}
	out.Header.Set("Accept", strings.Join(keep, ","))
}

// Response decodes the answer value by value (a watch is a stream of
// events, each one value) and sends each one redacted.
func (hideSecretValues) Response(resp *http.Response) (io.Reader, error) {
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return nil, errors.New("the Kubernetes API server answered a secrets read with " + resp.Header.Get("Content-Type") + ", not JSON; --kube-hide-secrets serves only JSON")
	}
	d := json.NewDecoder(resp.Body)
	d.UseNumber()
	return &redactingReader{d: d}, nil
}

// redactingReader reads a stream of JSON values from d and yields each
// one, redacted and re-encoded, followed by a newline.
type redactingReader struct {
	d   *json.Decoder
	buf bytes.Buffer
	err error
}

func (r *redactingReader) Read(p []byte) (int, error) {
	for r.buf.Len() == 0 {
		if r.err != nil {
			return 0, r.err
		}
		var v any
		if err := r.d.Decode(&v); err != nil {
			// io.EOF ends the answer; anything else (a value cut short,
			// not JSON) is not served on.
			r.err = err
			continue
		}
		redact(v)
		b, err := json.Marshal(v)
		if err != nil {
			r.err = err
			continue
		}
		r.buf.Write(b)
		r.buf.WriteByte('\n')
	}
	return r.buf.Read(p)
}

// redact empties every secret value in v: those of each object (a map
// with metadata) nested anywhere in it (a list's items, a watch event's
// object, a Table's rows).
func redact(v any) {
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			redact(e)
		}
	case map[string]any:
		if _, ok := x["metadata"].(map[string]any); ok {
			redactObject(x)
		}
		for k, e := range x {
			if k != "data" && k != "stringData" {
				redact(e)
			}
		}
	}
}

// redactObject empties the values of the object's data and stringData
// (keeping the keys), and its last-applied annotation's copy of them.
func redactObject(x map[string]any) {
	for _, k := range []string{"data", "stringData"} {
		if m, ok := x[k].(map[string]any); ok {
			for key := range m {
				m[key] = ""
			}
		} else if x[k] != nil {
			x[k] = map[string]any{} // not a Secret's shape: nothing of it kept
		}
	}
	md, _ := x["metadata"].(map[string]any)
	if ann, ok := md["annotations"].(map[string]any); ok {
		if s, ok := ann[lastApplied].(string); ok {
			ann[lastApplied] = redactedJSON(s)
		}
	}
}

// redactedJSON is the JSON document s with its secret values emptied, ""
// if s is not JSON.
func redactedJSON(s string) string {
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var v any
	if d.Decode(&v) != nil {
		return ""
	}
	if m, ok := v.(map[string]any); ok {
		redactObject(m) // what was applied is the Secret, metadata or not
	}
	redact(v)
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}
