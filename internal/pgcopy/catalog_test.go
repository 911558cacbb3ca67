package pgcopy

import (
	"reflect"
	"strings"
	"testing"
)

func TestFilter(t *testing.T) {
	cases := []struct {
		f     Filter
		names []string // the table's name, then its partitioned root's
		want  bool
	}{
		{Filter{}, []string{"public.a"}, true},
		{Filter{Include: []string{"public.*"}}, []string{"public.a"}, true},
		{Filter{Include: []string{"public.*"}}, []string{"sales.a"}, false},
		{Filter{Exclude: []string{"public.log*"}}, []string{"public.logs"}, false},
		{Filter{Include: []string{"*"}, Exclude: []string{"*.tmp"}}, []string{"x.tmp"}, false},
		{Filter{Include: []string{"public.events"}}, []string{"public.events_2026", "public.events"}, true},
		{Filter{Exclude: []string{"public.events"}}, []string{"public.events_2026", "public.events"}, false},
		{Filter{Include: []string{"public.a?"}}, []string{"public.ab"}, true},
	}
	for _, c := range cases {
		if got := c.f.match(c.names...); got != c.want {
			t.Errorf("%+v match %q = %v, want %v", c.f, c.names, got, c.want)
		}
	}
}

func TestWritten(t *testing.T) {
	then := []Evidence{{"public.a", 10, 0, 0}, {"public.b", 5, 1, 0}, {"public.c", 1, 0, 0}}
	now := []Evidence{{"public.a", 10, 0, 0}, {"public.b", 5, 2, 0}}
	if got, want := written(then, now), []string{"public.b", "public.c"}; !reflect.DeepEqual(got, want) {
		t.Errorf("written = %q, want %q", got, want)
	}
	if got := written(then, then); got != nil {
		t.Errorf("written with nothing changed = %q", got)
	}
}

func TestRanges(t *testing.T) {
	tb := &Table{Schema: "public", Name: "t", Bytes: 300}
	keyParts := ranges(tb, "id", []string{"100", "200"}, "")
	want := []Part{
		{ID: "public.t#1", Where: "id < 100", Bytes: 100},
		{ID: "public.t#2", Where: "id >= 100 AND id < 200", Bytes: 100},
		{ID: "public.t#3", Where: "id >= 200", Bytes: 100},
	}
	if !reflect.DeepEqual(keyParts, want) {
		t.Errorf("ranges = %+v", keyParts)
	}
	blockParts(tb, 10, 2)
	if len(tb.Parts) != 2 || tb.Parts[0].Where != "ctid < '(5,0)'::tid" || tb.Parts[1].Where != "ctid >= '(5,0)'::tid" {
		t.Errorf("block parts = %+v", tb.Parts)
	}
}

func TestParseDump(t *testing.T) {
	dump := `--
-- PostgreSQL database dump
--

\restrict abc123

SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);

--
-- Name: t_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.t
    ADD CONSTRAINT t_pkey PRIMARY KEY (id);


--
-- Name: t_x; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX t_x ON public.t USING btree (x);


--
-- Name: u u_t_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.u
    ADD CONSTRAINT u_t_fkey FOREIGN KEY (t) REFERENCES public.t(id);


--
-- PostgreSQL database dump complete
--

\unrestrict abc123

`
	s := parseDump(dump)
	if want := "--\n-- PostgreSQL database dump\n--\n\n\nSET statement_timeout = 0;\nSELECT pg_catalog.set_config('search_path', '', false);\n\n"; s.Preamble != want {
		t.Errorf("preamble = %q", s.Preamble)
	}
	var got [][3]any
	for _, it := range s.Items {
		got = append(got, [3]any{it.Name, it.Type, it.parallel()})
	}
	want := [][3]any{{"t_pkey", "CONSTRAINT", true}, {"t_x", "INDEX", true}, {"u u_t_fkey", "FK CONSTRAINT", false}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("items = %v, want %v", got, want)
	}
	for _, it := range s.Items {
		if it.Name == "u u_t_fkey" && (strings.Contains(it.SQL, `\unrestrict`) || !strings.Contains(it.SQL, "FOREIGN KEY")) {
			t.Errorf("the last item's SQL: %q", it.SQL)
		}
	}
}

func TestItemTable(t *testing.T) {
	cases := []struct{ sql, want string }{
		{"--\n-- Name: t_x; Type: INDEX; Schema: public; Owner: -\n--\n\nCREATE INDEX t_x ON public.t USING btree (x);\n", "public.t"},
		{"CREATE UNIQUE INDEX \"my idx\" ON \"Sales\".\"Orders\" USING btree (\"Order ID\");", `"Sales"."Orders"`},
		{"CREATE INDEX p_k ON ONLY public.parted USING btree (k);", "public.parted"},
		{"ALTER TABLE ONLY \"we\"\"ird\".\"ta\"\"ble\"\n    ADD CONSTRAINT x_pkey PRIMARY KEY (id);", `"we""ird"."ta""ble"`},
		{"ALTER TABLE public.t\n    ADD CONSTRAINT c CHECK (x > 0);", "public.t"},
		{"CREATE TRIGGER tr AFTER INSERT ON public.t FOR EACH ROW EXECUTE FUNCTION f();", ""},
	}
	for _, c := range cases {
		got := ""
		if m := itemTable.FindStringSubmatch(stripComments(c.sql)); m != nil {
			got = m[1]
		}
		if got != c.want {
			t.Errorf("%q: table %q, want %q", c.sql, got, c.want)
		}
	}
}
