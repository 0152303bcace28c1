/* bench.h - `junction bench`, the load generator.
 *
 * One command loads any door of Junction, or the server a user would
 * otherwise pick (Mosquitto, nginx...), over the real wire protocol, from
 * one libuv loop with many connections. Payloads carry a timestamp
 * (stamp.h) so latency is measured end to end; a histogram with bounded
 * relative error (hist.h) holds it. docs/bench.md is the user's guide.
 */
#ifndef JN_BENCH_H
#define JN_BENCH_H

/* Runs `junction bench <door> [options]`. |argv[0]| is the command's own
 * name ("bench", only used in messages), |argv[1]| the door ("http",
 * "mqtt"), the rest options. Prints a live progress line on stderr when it
 * is a terminal, then the summary on stdout (text, or one JSON object with
 * --json). Returns 0 when the run completed (errors and losses are in the
 * summary), 1 when it could not run (cannot connect, the server broke the
 * protocol, out of memory), 2 on bad usage (message on stderr). */
int jn_bench_main(int argc, char **argv);

#endif
