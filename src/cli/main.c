/* main.c - the `junction` command: dispatch to subcommands, help, version,
 * and `serve`, which turns the config (file and flags) into a running
 * server. The client subcommands live in their own files. */
#include <stdio.h>
#include <string.h>

#include "bench/bench.h"
#include "cli.h"
#include "server/config.h"
#include "server/server.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: junction COMMAND [ARGS]\n"
            "\n"
            "Commands:\n"
            "  serve [OPTIONS]              run the server (`junction serve --help` lists every option)\n"
            "  pub SUBJECT [PAYLOAD|-]      publish one record (- reads the payload from stdin)\n"
            "      [--key K] [--header k=v]... [--partition N] [--content-type T]\n"
            "  sub FILTER                   print records as they arrive\n"
            "      [--from earliest|live|OFFSET|time:MS] [--group G] [--count N] [--json]\n"
            "  streams [--json]             list streams\n"
            "  streams create NAME          create a stream\n"
            "      [--partitions N] [--fsync always|interval|never] [--retention-ms N] [--compact]\n"
            "  streams delete NAME          delete a stream and its records\n"
            "  bench                        load generator\n"
            "  version                      print the version\n"
            "  help                         this help\n"
            "\n"
            "Client options (pub, sub, streams):\n"
            "  --url URL                    server (default $JUNCTION_URL, else http://127.0.0.1:8080)\n"
            "  --token T                    API token (default $JUNCTION_TOKEN)\n"
            "  --user U --password P        basic authentication\n"
            "\n"
            "Exit status: 0 success, 1 the server refused or could not be reached, 2 bad usage.\n");
}

int cli_cmd_serve(int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            jn_config_print_usage(stdout);
            return CLI_EXIT_OK;
        }
    }
    /* --print-config is not a config option: take it out before the
     * config parser sees the flags. */
    bool print = false;
    char *rest[argc + 1];
    int nrest = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--print-config") == 0)
            print = true;
        else
            rest[nrest++] = argv[i];
    }
    rest[nrest] = NULL;

    jn_config_t cfg;
    char err[JN_CONFIG_ERR_MAX];
    int rc = jn_config_init(&cfg);
    if (rc) {
        fprintf(stderr, "junction serve: %s\n", jn_strerror(rc));
        jn_config_free(&cfg);
        return CLI_EXIT_FAIL;
    }
    rc = jn_config_load_args(&cfg, nrest, rest, err, sizeof err);
    if (rc) {
        fprintf(stderr, "junction serve: %s\n", err);
        jn_config_free(&cfg);
        return rc == JN_EIO ? CLI_EXIT_FAIL : CLI_EXIT_USAGE;
    }
    if (print) {
        jn_config_print(&cfg, stdout);
        jn_config_free(&cfg);
        return CLI_EXIT_OK;
    }
    rc = jn_server_run(&cfg);
    jn_config_free(&cfg);
    return rc == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    int sub_argc = argc - 2;
    char **sub_argv = argv + 2;

    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("junction %s\n", JN_VERSION);
        return CLI_EXIT_OK;
    }
    if (strcmp(cmd, "serve") == 0)
        return cli_cmd_serve(sub_argc, sub_argv);
    if (strcmp(cmd, "bench") == 0)
        return jn_bench_main(argc - 1, argv + 1); /* argv[0] = "bench", argv[1] = door */

    int (*client_cmd)(int, char **) = NULL;
    if (strcmp(cmd, "pub") == 0)
        client_cmd = cli_cmd_pub;
    else if (strcmp(cmd, "sub") == 0)
        client_cmd = cli_cmd_sub;
    else if (strcmp(cmd, "streams") == 0)
        client_cmd = cli_cmd_streams;
    if (!client_cmd) {
        fprintf(stderr, "junction: unknown command '%s' (see `junction help`)\n", cmd);
        return CLI_EXIT_USAGE;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "junction: cannot initialise libcurl\n");
        return CLI_EXIT_FAIL;
    }
    int rc = client_cmd(sub_argc, sub_argv);
    curl_global_cleanup();
    return rc;
}
