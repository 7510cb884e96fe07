package httpapi_test

import "flag"

// long runs the soak-sized variants of the scenario tests.
var long = flag.Bool("long", false, "run the chaos scenarios at soak size (slow)")
