/* door_metrics.h - the metric families every door registers so that the
 * console and GET /v1/stats can show connections and message rates per
 * door without knowing the doors (docs/console.md).
 *
 * A door registers, in the broker's metrics (jn_broker_metrics):
 *   gauge   JN_DOOR_CONNECTIONS {door="<name>"}                 open connections or streams
 *   counter JN_DOOR_MESSAGES    {door="<name>",direction="in"}  messages received
 *   counter JN_DOOR_MESSAGES    {door="<name>",direction="out"} messages sent
 * with exactly the help texts below (the registry requires one help text
 * per family). /v1/stats reads them back from the rendered registry.
 */
#ifndef JN_DOOR_METRICS_H
#define JN_DOOR_METRICS_H

#define JN_DOOR_CONNECTIONS "junction_door_connections"
#define JN_DOOR_CONNECTIONS_HELP "Open connections (or streams) per door"
#define JN_DOOR_MESSAGES "junction_door_messages_total"
#define JN_DOOR_MESSAGES_HELP "Messages through a door, by direction"

#endif
