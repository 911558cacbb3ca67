package schema_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runbookhq/runbook/schema"
)

const paramsRunbook = `version: 1
name: params
params:
  source_url: {secret: true, env: SOURCE_URL}
  app_role:
    default: application
    pattern: '^[a-z_][a-z0-9_]*$'
  mode: {enum: [fast, safe], default: safe, env: MODE}
  customer: {}
  heroku_app: {required: false}
  port: {default: 5432}
steps:
  - id: hello
    confirm: ok
`

// resolve loads paramsRunbook (as rb.yaml in dir) and resolves its params.
func resolve(t *testing.T, dir string, env map[string]string, vars []string, files ...string) (schema.Values, string) {
	t.Helper()
	rb, err := schema.Load(filepath.Join(dir, "rb.yaml"), []byte(paramsRunbook))
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range files {
		files[i] = filepath.Join(dir, f)
	}
	vals, err := rb.ResolveParams(schema.ParamInputs{VarsFiles: files, Vars: vars,
		LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
	if err != nil {
		return nil, strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), "")
	}
	return vals, ""
}

func writeVars(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// Values come from, weakest first: the default, the env variable, vars files
// in order, --var flags in order.
func TestResolveParamsPrecedence(t *testing.T) {
	dir := t.TempDir()
	writeVars(t, dir, map[string]string{
		"a.yaml": "customer: acme\nmode: fast\n",
		"b.yaml": "# later files win\ncustomer: globex\napp_role: globex_app\n",
	})
	type want struct{ value, source string }
	for _, tc := range []struct {
		name  string
		env   map[string]string
		vars  []string
		files []string
		want  map[string]want
	}{
		{"defaults and one --var", nil, []string{"customer=acme", "source_url=postgres://u:pw@h/db"}, nil, map[string]want{
			"app_role": {"application", "default"}, "mode": {"safe", "default"}, "port": {"5432", "default"},
			"customer": {"acme", "--var"}, "heroku_app": {"", ""}, "source_url": {"postgres://u:pw@h/db", "--var"}}},
		{"env beats the default", map[string]string{"MODE": "fast", "SOURCE_URL": "postgres://x/y"}, []string{"customer=c"}, nil, map[string]want{
			"mode": {"fast", "env MODE"}, "source_url": {"postgres://x/y", "env SOURCE_URL"}}},
		{"vars file beats env", map[string]string{"MODE": "safe", "SOURCE_URL": "postgres://x/y"}, nil, []string{"a.yaml"}, map[string]want{
			"mode": {"fast", "vars a.yaml:2"}, "customer": {"acme", "vars a.yaml:1"}}},
		{"later vars file wins", map[string]string{"SOURCE_URL": "u"}, nil, []string{"a.yaml", "b.yaml"}, map[string]want{
			"customer": {"globex", "vars b.yaml:2"}, "app_role": {"globex_app", "vars b.yaml:3"}, "mode": {"fast", "vars a.yaml:2"}}},
		{"--var beats vars files", map[string]string{"SOURCE_URL": "u"}, []string{"customer=initech", "mode=safe"}, []string{"a.yaml", "b.yaml"}, map[string]want{
			"customer": {"initech", "--var"}, "mode": {"safe", "--var"}, "app_role": {"globex_app", "vars b.yaml:3"}}},
		{"later --var wins", map[string]string{"SOURCE_URL": "u"}, []string{"customer=a", "customer=b=c"}, nil, map[string]want{
			"customer": {"b=c", "--var"}}},
		// An empty --var is a value; an environment variable set to the
		// empty string is not (SOURCE_URL="" does not count).
		{"empty values", map[string]string{"SOURCE_URL": "", "MODE": ""}, []string{"customer=", "heroku_app=", "source_url="}, nil, map[string]want{
			"customer": {"", "--var"}, "source_url": {"", "--var"}, "heroku_app": {"", "--var"}, "mode": {"safe", "default"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vals, err := resolve(t, dir, tc.env, tc.vars, tc.files...)
			if err != "" {
				t.Fatal(err)
			}
			for name, w := range tc.want {
				v, ok := vals.Get(name)
				v.Source = strings.ReplaceAll(v.Source, dir+string(filepath.Separator), "")
				if !ok || v.Value != w.value || v.Source != w.source {
					t.Errorf("%s = %q from %q, want %q from %q", name, v.Value, v.Source, w.value, w.source)
				}
			}
			if got := strings.Join(namesOf(vals), " "); got != "source_url app_role mode customer heroku_app port" {
				t.Errorf("values in order %s", got)
			}
		})
	}
}

func namesOf(vs schema.Values) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Name)
	}
	return out
}

func TestResolveParamsSecrets(t *testing.T) {
	vals, err := resolve(t, t.TempDir(), map[string]string{"SOURCE_URL": "postgres://u:thepassword@h/db"}, []string{"customer=c"})
	if err != "" {
		t.Fatal(err)
	}
	v, _ := vals.Get("source_url")
	if v.Display() != "***" || !v.Secret {
		t.Errorf("secret shown as %q", v.Display())
	}
	if c, _ := vals.Get("customer"); c.Display() != "c" {
		t.Errorf("customer shown as %q", c.Display())
	}
	if s := vals.Secrets(); len(s) != 1 || s[0] != "postgres://u:thepassword@h/db" {
		t.Errorf("secrets %q", s)
	}
	if m := vals.Map(); m["customer"] != "c" || m["port"] != "5432" {
		t.Errorf("map %v", m)
	}
}

// Every problem with the params is reported at once, at the place to fix it.
func TestResolveParamsErrors(t *testing.T) {
	dir := t.TempDir()
	writeVars(t, dir, map[string]string{
		"typo.yaml":   "customer: acme\napp_rol: x\n",
		"bad.yaml":    "customer: acme\nmode: slow\napp_role: 'Not Valid'\n",
		"list.yaml":   "- customer: acme\n",
		"scalar.yaml": "acme\n",
		"nested.yaml": "customer: {name: acme}\n",
		"dup.yaml":    "customer: a\ncustomer: b\n",
		"broken.yaml": "customer: 'acme\n",
		"empty.yaml":  "# nothing yet\n",
		"null.yaml":   "customer: ~\nheroku_app:\n",
	})
	const missingURL = "rb.yaml:4:3: param source_url is required: give it with --var source_url=VALUE or a vars file or $SOURCE_URL"
	const missingCustomer = "rb.yaml:9:3: param customer is required: give it with --var customer=VALUE or a vars file"
	for _, tc := range []struct {
		name  string
		env   map[string]string
		vars  []string
		files []string
		want  string
	}{
		{"missing required", nil, nil, nil, missingURL + "\n" + missingCustomer},
		{"unknown --var", map[string]string{"SOURCE_URL": "u"}, []string{"customer=c", "app_rol=x", "nothing_like_it=1"}, nil,
			"--var app_rol: unknown param \"app_rol\" (did you mean \"app_role\"?)\n--var nothing_like_it: unknown param \"nothing_like_it\""},
		{"--var without =", map[string]string{"SOURCE_URL": "u"}, []string{"customer=c", "mode", "=x"}, nil,
			"--var: \"mode\": want NAME=VALUE\n--var: \"=…\": want NAME=VALUE"},
		{"unknown in a vars file", map[string]string{"SOURCE_URL": "u"}, nil, []string{"typo.yaml"},
			"typo.yaml:2:1: unknown param \"app_rol\" (did you mean \"app_role\"?)"},
		{"pattern and enum in a vars file", map[string]string{"SOURCE_URL": "u"}, nil, []string{"bad.yaml"},
			"bad.yaml:2:7: param mode: value \"slow\" is not one of \"fast\", \"safe\"\nbad.yaml:3:11: param app_role: value \"Not Valid\" does not match pattern ^[a-z_][a-z0-9_]*$"},
		{"an empty environment variable is not a value", map[string]string{"SOURCE_URL": ""}, []string{"customer=c"}, nil,
			"rb.yaml:4:3: param source_url is required: give it with --var source_url=VALUE or a vars file or $SOURCE_URL"},
		{"pattern and enum from --var", map[string]string{"SOURCE_URL": "u"}, []string{"customer=c", "mode=slow", "app_role=x-y"}, nil,
			// In the command line's order.
			"--var mode: param mode: value \"slow\" is not one of \"fast\", \"safe\"\n--var app_role: param app_role: value \"x-y\" does not match pattern ^[a-z_][a-z0-9_]*$"},
		{"enum from env", map[string]string{"SOURCE_URL": "u", "MODE": "turbo"}, []string{"customer=c"}, nil,
			"rb.yaml:8:50: param mode: value \"turbo\" of $MODE is not one of \"fast\", \"safe\""},
		{"vars file is a list", map[string]string{"SOURCE_URL": "u"}, []string{"customer=c"}, []string{"list.yaml"},
			"list.yaml:1:1: a vars file must be a mapping of param names to values, not a list"},
		{"vars file is a string", map[string]string{"SOURCE_URL": "u"}, []string{"customer=c"}, []string{"scalar.yaml"},
			"scalar.yaml:1:1: a vars file must be a mapping of param names to values, not a string"},
		{"vars value is a mapping", map[string]string{"SOURCE_URL": "u"}, nil, []string{"nested.yaml"},
			"nested.yaml:1:11: customer must be a string, not a mapping\n" + missingCustomer},
		{"duplicate key in a vars file", map[string]string{"SOURCE_URL": "u"}, nil, []string{"dup.yaml"},
			"dup.yaml:2:1: duplicate key \"customer\" (first at line 1)\n" + missingCustomer},
		{"vars file is not YAML", map[string]string{"SOURCE_URL": "u"}, []string{"customer=c"}, []string{"broken.yaml"},
			"broken.yaml:1:11: invalid YAML: found unexpected end of stream (while scanning a quoted scalar that starts here, and is never closed)"},
		{"null is the empty string", map[string]string{"SOURCE_URL": "u", "MODE": "x"}, nil, []string{"empty.yaml", "null.yaml"},
			"rb.yaml:8:50: param mode: value \"x\" of $MODE is not one of \"fast\", \"safe\""},
		{"missing vars file", map[string]string{"SOURCE_URL": "u"}, []string{"customer=c"}, []string{"nope.yaml"},
			"nope.yaml: no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := resolve(t, dir, tc.env, tc.vars, tc.files...)
			if err != tc.want {
				t.Errorf("got\n%s\nwant\n%s", err, tc.want)
			}
		})
	}
	// A secret's value is never shown, even when it is wrong.
	rb, err := schema.Load("rb.yaml", []byte(strings.Replace(paramsRunbook, "{secret: true, env: SOURCE_URL}", "{secret: true, pattern: 'postgres://.*'}", 1)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = rb.ResolveParams(schema.ParamInputs{Vars: []string{"customer=c", "source_url=mysql://u:hunter2@h/db"}})
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "value (secret) does not match") {
		t.Errorf("secret in error: %v", err)
	}
}
