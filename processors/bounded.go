package processors

// boundedMap is a map that holds at most max entries. Adding a new key to a
// full map evicts the key that was added longest ago. It is not safe for
// concurrent use.
type boundedMap[K comparable, V any] struct {
	max     int
	entries map[K]V
	// order is a ring of keys in insertion order; head is the oldest once
	// the ring is full. A key deleted with delete stays in the ring until
	// its slot is reused, so the map may hold fewer than max keys, and a
	// key deleted and added again may be evicted when its first slot is.
	order []K
	head  int
}

func newBoundedMap[K comparable, V any](max int) *boundedMap[K, V] {
	if max < 1 {
		panic("BUG: boundedMap needs a positive max")
	}
	return &boundedMap[K, V]{max: max, entries: make(map[K]V)}
}

func (m *boundedMap[K, V]) get(k K) (V, bool) {
	v, ok := m.entries[k]
	return v, ok
}

// put sets the value of k. A key that is already present keeps its place
// in the eviction order.
func (m *boundedMap[K, V]) put(k K, v V) {
	if _, ok := m.entries[k]; ok {
		m.entries[k] = v
		return
	}
	if len(m.order) < m.max {
		m.order = append(m.order, k)
	} else {
		delete(m.entries, m.order[m.head])
		m.order[m.head] = k
		m.head = (m.head + 1) % m.max
	}
	m.entries[k] = v
}

func (m *boundedMap[K, V]) delete(k K) { delete(m.entries, k) }

func (m *boundedMap[K, V]) len() int { return len(m.entries) }
