// The auth schema's migrations, embedded from services/auth/migrations/*.sql
// at build time by crm_embed_migrations.
#ifndef CRM_SERVICES_AUTH_MIGRATIONS_H_
#define CRM_SERVICES_AUTH_MIGRATIONS_H_

#include "absl/types/span.h"
#include "common/migrations.h"

namespace crm::auth {

// Name of the database lock that serializes concurrent migration runs.
inline constexpr char kMigrationLockName[] = "crm_auth_migrations";

absl::Span<const crm::Migration> Migrations();

}  // namespace crm::auth

#endif  // CRM_SERVICES_AUTH_MIGRATIONS_H_
