/* Links against SunriseLink::sunrise_link and checks the library it runs with. */
#include <stdio.h>
#include <string.h>

#include "sunrise_link.h"

int main(void) {
    sunrise_link_transport_plugin_t table;
    memset(&table, 0, sizeof(table));
    table.struct_size = (uint32_t)sizeof(table);
    if (sunrise_link_transport_plugin_get(&table) != SUNRISE_LINK_OK ||
        table.abi_version < 1 || table.create == NULL) {
        fprintf(stderr, "package_test: bad plugin table: %s\n", sunrise_link_last_error());
        return 1;
    }
    if (strcmp(sunrise_link_transport_name(), "sunrise_link") != 0) return 1;
    printf("package_test: sunrise_link %s, ABI %u\n", sunrise_link_version(), table.abi_version);
    return 0;
}
