"""Fleet-wide admission to named resources: circuit breakers, rate limits, concurrency limits and
retry budgets kept in Redis, their configuration, status and late settlement, and their Lua."""
