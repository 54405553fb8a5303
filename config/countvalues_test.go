package config

import "testing"

func TestCountValues(t *testing.T) {
	for in, want := range map[string]int{
		`1`:                       1,
		`[1,2,3]`:                 4,
		`{"a":1,"b":[true,null]}`: 5, // the object, 1, the array, true, null
		`"a,b[c{d"`:               1,
		`["\",[{", "\\", "x"]`:    4,
		`[[[[]]]]`:                5, // four arrays (an upper bound by one for an empty one)
		`{"k,[{":"v,[{"}`:         2,
		`  [ 1 , 2 ]  `:           3,
	} {
		if got := countValues([]byte(in)); got != want {
			t.Errorf("countValues(%s) = %d, want %d", in, got, want)
		}
	}
}
