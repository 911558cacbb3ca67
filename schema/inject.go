package schema

import (
	"reflect"

	"github.com/expr-lang/expr/ast"
)

// Raw interpolation. A template whose text runs as SQL (text:"sql": an sql
// script, a generate or assert query) or as a bash command line
// (text:"shell": a shell run) executes whatever an interpolated value holds:
// a param app_role given as  a'); DROP TABLE t; --  does just that. Loading
// warns, at the param's place in the template, about every param without
// pattern or enum whose value can reach that text as it is: not through a
// quoting function of that language (ident(), literal() for SQL;
// shellquote() for the shell), nor only through a value that cannot carry
// text (a comparison, a length, a number).

// quoters are the functions whose result is safe raw text, by language.
var quoters = map[string]map[string]bool{
	"sql":   {"ident": true, "literal": true},
	"shell": {"shellquote": true},
}

// rawAdvice says what to do instead, by language.
var rawAdvice = map[string]string{
	"sql": "into SQL as raw text: a value like `x'); DROP TABLE t; --` would run as SQL. " +
		"Pass it as a bind parameter (args: and $1), quote it with ident() or literal(), or give the param a pattern or an enum",
	"shell": "into a shell command line as raw text: a value like `$(rm -rf ~)` would run. " +
		`Pass it through env: and write "$NAME" in the command, quote it with shellquote(), or give the param a pattern or an enum`,
}

// checkRaw warns about the free params that reach the site's text raw.
func (s *scope) checkRaw(errs *errList, site exprSite, root ast.Node, at func(int) Pos) {
	safe, ok := quoters[site.text]
	if !ok {
		return
	}
	for _, ref := range rawParams(root, safe) {
		if s.free[ref.name] {
			errs.warn(at(ref.at), "param %s has no pattern and is interpolated %s", ref.name, rawAdvice[site.text])
		}
	}
}

// paramRef is a params.NAME in an expression and the rune offset where it
// starts.
type paramRef struct {
	name string
	at   int
}

// rawParams returns the params whose value can flow, unquoted, into the
// value of n as text.
func rawParams(n ast.Node, safe map[string]bool) []paramRef {
	if n == nil || !textual(n.Type()) {
		return nil
	}
	switch x := n.(type) {
	case *ast.MemberNode:
		if id, ok := x.Node.(*ast.IdentifierNode); ok && id.Value == "params" {
			if p, ok := x.Property.(*ast.StringNode); ok {
				return []paramRef{{name: p.Value, at: id.Location().From}}
			}
		}
		// params.x.y is not a string (the type check refuses it); other
		// members (steps, conn, env, run) are not params.
		return rawParams(x.Node, safe)
	case *ast.CallNode:
		if id, ok := x.Callee.(*ast.IdentifierNode); ok && safe[id.Value] {
			return nil
		}
		return rawAll(safe, x.Arguments...)
	case *ast.BuiltinNode:
		return rawAll(safe, x.Arguments...)
	case *ast.ConditionalNode:
		// The condition decides, it is not part of the value.
		return rawAll(safe, x.Exp1, x.Exp2)
	case *ast.BinaryNode:
		return rawAll(safe, x.Left, x.Right)
	case *ast.UnaryNode:
		return rawParams(x.Node, safe)
	case *ast.ChainNode:
		return rawParams(x.Node, safe)
	case *ast.SliceNode:
		return rawParams(x.Node, safe)
	case *ast.ArrayNode:
		return rawAll(safe, x.Nodes...)
	case *ast.MapNode:
		return rawAll(safe, x.Pairs...)
	case *ast.PairNode:
		return rawAll(safe, x.Key, x.Value)
	case *ast.VariableDeclaratorNode:
		return rawAll(safe, x.Value, x.Expr)
	case *ast.SequenceNode:
		return rawAll(safe, x.Nodes...)
	case *ast.PredicateNode:
		return rawParams(x.Node, safe)
	}
	return nil
}

func rawAll(safe map[string]bool, ns ...ast.Node) []paramRef {
	var out []paramRef
	for _, n := range ns {
		out = append(out, rawParams(n, safe)...)
	}
	return out
}

// textual reports whether a value of type t can carry arbitrary text: not a
// boolean nor a number.
func textual(t reflect.Type) bool {
	if t == nil {
		return true
	}
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return false
	}
	return true
}
