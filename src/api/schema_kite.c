/* Bodies of kite's own routes, beyond Firecracker's contract (live migration,
 * docs/migration.md), in the same tables the generated schema uses. */
#include "api/schema.h"

static const struct schema str = {.name = "string", .type = ST_STRING};
static const struct schema downtime = {.name = "downtime_ms", .type = ST_INTEGER, .has_min = true,
				       .min = 1, .has_max = true, .max = 60000};
static const struct schema rounds = {.name = "max_rounds", .type = ST_INTEGER, .has_min = true, .min = 1,
				     .has_max = true, .max = 1000};

static const struct schema_prop receive_props[] = {
	{"listen", &str, true},
};
static const struct schema migration_receive = {.name = "MigrationReceive", .type = ST_OBJECT,
						.props = receive_props, .nprops = 1};

static const struct schema_prop send_props[] = {
	{"destination", &str, true},
	{"downtime_ms", &downtime, false},
	{"max_rounds", &rounds, false},
};
static const struct schema migration_send = {.name = "MigrationSend", .type = ST_OBJECT,
					     .props = send_props, .nprops = 3};

const struct schema_entry schema_kite_table[] = {
	{"MigrationReceive", &migration_receive},
	{"MigrationSend", &migration_send},
	{NULL, NULL},
};
