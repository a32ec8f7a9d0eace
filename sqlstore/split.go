package sqlstore

import "strings"

// split cuts a query into statements at semicolons outside quotes,
// brackets and comments, so that each statement's changes (rows, or a
// schema statement's text) are captured on their own. Empty statements
// are dropped.
func split(q string) []string {
	var out []string
	start := 0
	for i := 0; i < len(q); i++ {
		switch c := q[i]; c {
		case '\'', '"', '`':
			for i++; i < len(q); i++ {
				if q[i] == c {
					if i+1 < len(q) && q[i+1] == c {
						i++
						continue
					}
					break
				}
			}
		case '[':
			for i++; i < len(q) && q[i] != ']'; i++ {
			}
		case '-':
			if i+1 < len(q) && q[i+1] == '-' {
				for i += 2; i < len(q) && q[i] != '\n'; i++ {
				}
			}
		case '/':
			if i+1 < len(q) && q[i+1] == '*' {
				if end := strings.Index(q[i+2:], "*/"); end >= 0 {
					i += 2 + end + 1
				} else {
					i = len(q)
				}
			}
		case ';':
			if s := q[start : i+1]; !blank(s) {
				out = append(out, s)
			}
			start = i + 1
		}
	}
	if start < len(q) && !blank(q[start:]) {
		out = append(out, q[start:])
	}
	return out
}

// blank reports whether s holds nothing but space, semicolons and comments.
func blank(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ';':
		case c == '-' && i+1 < len(s) && s[i+1] == '-':
			for i += 2; i < len(s) && s[i] != '\n'; i++ {
			}
		case c == '/' && i+1 < len(s) && s[i+1] == '*':
			end := strings.Index(s[i+2:], "*/")
			if end < 0 {
				return true
			}
			i += 2 + end + 1
		default:
			return false
		}
	}
	return true
}
