package ingest

// maxJSONDepth caps how deeply arrays and objects may nest in a request
// body. segmentio/encoding/json recurses once per level without a limit of
// its own, so a 1 MiB body of "[" would otherwise cost a deep stack.
const maxJSONDepth = 64

// nestingWithin reports whether the arrays and objects in b nest at most
// limit levels deep. It only tracks brackets outside strings and does not
// validate the JSON otherwise.
func nestingWithin(b []byte, limit int) bool {
	depth := 0
	inString := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if inString {
			switch c {
			case '\\':
				i++ // the escaped character cannot end the string
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '[', '{':
			depth++
			if depth > limit {
				return false
			}
		case ']', '}':
			depth--
		}
	}
	return true
}
