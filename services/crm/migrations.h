// The CRM data schema's migrations, embedded from services/crm/migrations/
// *.sql at build time by crm_embed_migrations.
#ifndef CRM_SERVICES_CRM_MIGRATIONS_H_
#define CRM_SERVICES_CRM_MIGRATIONS_H_

#include "absl/types/span.h"
#include "common/migrations.h"

namespace crm::data {

// Name of the database lock that serializes concurrent migration runs.
inline constexpr char kMigrationLockName[] = "crm_data_migrations";

absl::Span<const crm::Migration> Migrations();

}  // namespace crm::data

#endif  // CRM_SERVICES_CRM_MIGRATIONS_H_
