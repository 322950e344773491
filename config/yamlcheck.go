package config

import (
	"fmt"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

var (
	configType   = reflect.TypeOf(Config{})
	durationType = reflect.TypeOf(Duration(0))
	byteSizeType = reflect.TypeOf(ByteSize(0))
)

// unknownKeyHints adds advice to the error for an unknown key in a section
// (by path) where a newcomer's key most likely belongs somewhere else.
var unknownKeyHints = map[string]string{
	"tags": "your own tags go under tags.custom, e.g. tags: {custom: {dc: east}}",
}

// checkNode walks a YAML node against the Go type it will be decoded into and
// reports, with line and key path, every unknown key and every value that
// cannot be decoded. yaml.v3's strict mode would catch the same problems, but
// names Go types rather than YAML keys and stops at the first custom error.
func checkNode(n *yaml.Node, t reflect.Type, path string) []error {
	for n.Kind == yaml.DocumentNode || n.Kind == yaml.AliasNode {
		if n.Kind == yaml.DocumentNode {
			if len(n.Content) == 0 {
				return nil
			}
			n = n.Content[0]
		} else {
			n = n.Alias
		}
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.ShortTag() == "!!null" {
		return nil
	}
	if t.Kind() == reflect.Map && t.Elem().Kind() == reflect.Struct && n.Kind == yaml.MappingNode {
		// A map of sections (fencing.members): check each as a section.
		var errs []error
		for i := 0; i+1 < len(n.Content); i += 2 {
			errs = append(errs, checkNode(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value))...)
		}
		return errs
	}
	if t.Kind() != reflect.Struct {
		return checkLeaf(n, t, path)
	}
	if n.Kind != yaml.MappingNode {
		return []error{fmt.Errorf("config line %d: %s: a %s where a mapping of keys is expected (known keys: %s)",
			n.Line, where(path), kindName(n), strings.Join(knownKeys(t), ", "))}
	}
	var errs []error
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Value == "<<" && k.ShortTag() == "!!merge" {
			errs = append(errs, checkNode(v, t, path)...)
			continue
		}
		f, ok := fieldByKey(t, k.Value)
		if !ok {
			msg := fmt.Sprintf("config line %d: unknown key %q in %s (known: %s)",
				k.Line, k.Value, where(path), strings.Join(knownKeys(t), ", "))
			if s := suggest(k.Value, knownKeys(t)); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			} else if h := unknownKeyHints[path]; h != "" {
				msg += "; " + h
			}
			errs = append(errs, fmt.Errorf("%s", msg))
			continue
		}
		errs = append(errs, checkNode(v, f.Type, join(path, k.Value))...)
	}
	return errs
}

// checkLeaf decodes a non-struct value into a scratch variable of its type.
func checkLeaf(n *yaml.Node, t reflect.Type, path string) []error {
	if t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode {
		var errs []error
		for i, item := range n.Content {
			errs = append(errs, checkLeaf(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
		}
		return errs
	}
	if t.Kind() == reflect.Map && n.Kind == yaml.MappingNode {
		var errs []error
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if v.Kind != yaml.ScalarNode && t.Elem().Kind() == reflect.String {
				errs = append(errs, fmt.Errorf("config line %d: %s: a %s where a single value is expected",
					v.Line, join(path, k.Value), kindName(v)))
			}
		}
		if len(errs) > 0 {
			return errs
		}
	}
	err := n.Decode(reflect.New(t).Interface())
	if err == nil {
		return nil
	}
	if te, ok := err.(*yaml.TypeError); ok {
		errs := make([]error, len(te.Errors))
		for i, e := range te.Errors {
			line, msg := n.Line, e
			if _, rest, ok := strings.Cut(e, ": "); ok && strings.HasPrefix(e, "line ") {
				fmt.Sscanf(e, "line %d:", &line)
				msg = rest
			}
			errs[i] = fmt.Errorf("config line %d: %s: %s (want %s)", line, path, msg, typeDesc(t))
		}
		return errs
	}
	return []error{fmt.Errorf("config line %d: %s: %v", n.Line, path, err)}
}

// typeDesc says in words what a Go type accepts in YAML.
func typeDesc(t reflect.Type) string {
	switch {
	case t == durationType:
		return `a duration such as "10s"`
	case t == byteSizeType:
		return `a byte size such as "16MB"`
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64:
		return "an integer"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "a list of " + strings.TrimPrefix(typeDesc(t.Elem()), "a ") + "s"
	case reflect.Map:
		return "a mapping of names to values"
	}
	return t.String()
}

// fieldByKey finds the struct field whose yaml tag is key.
func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if yamlName(f) == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// knownKeys lists a struct's YAML keys in declaration order.
func knownKeys(t reflect.Type) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		if name := yamlName(t.Field(i)); name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	return keys
}

func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return name
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func where(path string) string {
	if path == "" {
		return "the top level"
	}
	return path
}

// suggest returns the known key closest to key if it is a likely typo.
func suggest(key string, known []string) string {
	best, bestD := "", 3
	lk := strings.ToLower(key)
	for _, k := range known {
		d := editDistance(lk, k)
		if d < bestD || (d == bestD && k < best) {
			best, bestD = k, d
		}
	}
	if bestD > 2 || bestD >= len(key) {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
