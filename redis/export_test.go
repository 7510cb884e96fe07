package redis

// Position is position, for the tests of package redis_test.
var Position = position
