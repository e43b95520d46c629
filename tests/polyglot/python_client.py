#!/usr/bin/python3
"""Run the README walkthrough through Python stubs generated from proto/.

Usage (with /usr/bin/python3, whose Debian packages python3-grpcio and
python3-protobuf match the servers' gRPC 1.51 and protobuf 3.21):

  python_client.py --generated DIR --auth HOST:PORT --crm HOST:PORT --crmctl PATH

DIR contains the output of protoc --python_out and --grpc_out for proto/, and
of protoc --python_out for google/rpc/status.proto and error_details.proto
from the npm package google-proto-files. PATH is tools/crmctl.sh, which
reaches the database through RUN_STATE_DIR and RUN_BUILD_DIR. Every step
checks its result; the script stops at the first step that fails and exits 1.

Error details are read as grpc_status.rpc_status.from_call would read them,
from the grpc-status-details-bin trailer, because Debian 12 packages no
grpc_status module (pip's grpcio-status).
"""

import argparse
import subprocess
import sys
import time

import grpc

RPC_TIMEOUT_SECONDS = 10
# Maximum time the CRM server may take to apply a rotation from its
# invalidation stream.
APPLY_TIMEOUT_SECONDS = 10


class StepFailed(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise StepFailed(message)


def bearer(credential):
    return (("authorization", "Bearer " + credential),)


def expect_rpc_error(call, expected_code, description):
    """Run `call` and return the grpc.RpcError it raises with expected_code."""
    try:
        call()
    except grpc.RpcError as error:
        expect(error.code() == expected_code,
               f"{description}: expected {expected_code.name}, got {error.code().name}: {error.details()}")
        return error
    raise StepFailed(f"{description}: expected {expected_code.name}, but the call succeeded")


def error_details(error):
    """Return (google.rpc.Status, ErrorInfo or None, BadRequest or None) of a failed call."""
    from google.rpc import error_details_pb2, status_pb2 as rpc_status_pb2

    trailer = [value for key, value in (error.trailing_metadata() or ())
               if key == "grpc-status-details-bin"]
    expect(len(trailer) == 1, f"the {error.code().name} error has no grpc-status-details-bin trailer")
    rpc_status = rpc_status_pb2.Status.FromString(trailer[0])
    expect(rpc_status.code == error.code().value[0],
           f"google.rpc.Status has code {rpc_status.code}, the call {error.code().name}")
    expect(rpc_status.message == error.details(),
           f"google.rpc.Status has message {rpc_status.message!r}, the call {error.details()!r}")
    info = bad_request = None
    for detail in rpc_status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
    return rpc_status, info, bad_request


def expect_error_info(error, reason, domain, description):
    """Check the error's ErrorInfo reason and domain; return the ErrorInfo."""
    _, info, _ = error_details(error)
    expect(info is not None, f"{description}: the error details hold no ErrorInfo")
    expect(info.reason == reason, f"{description}: expected reason {reason}, got {info.reason}")
    expect(info.domain == domain, f"{description}: expected domain {domain}, got {info.domain}")
    return info


def describe_scopes(scope_pb2, scopes):
    return ", ".join(f"{scope_pb2.Module.Name(s.module)}:{scope_pb2.Action.Name(s.action)}" for s in scopes)


def create_organization(crmctl):
    result = subprocess.run([crmctl, "create-organization", "--display_name=Polyglot Python"],
                            capture_output=True, text=True, timeout=60, check=False)
    expect(result.returncode == 0,
           f"crmctl create-organization exited with {result.returncode}: {result.stderr.strip()}")
    keys = [line.split(":", 1)[1].strip() for line in result.stdout.splitlines()
            if line.startswith("admin_key:")]
    expect(len(keys) == 1, "crmctl create-organization printed no admin_key line")
    expect(keys[0].startswith("crmadm_"), "the admin key does not start with crmadm_")
    return keys[0]


def wait_until_applied(status_stub, status_pb2, sequence):
    """Wait until the CRM server's token-check cache cannot hold checks older than `sequence`.

    That is true once the server has applied `sequence` from its invalidation
    stream, and while its stream is not current, because the server then
    checks every token with the auth server.
    """
    deadline = time.monotonic() + APPLY_TIMEOUT_SECONDS
    status = None
    while time.monotonic() < deadline:
        status = status_stub.GetServerStatus(status_pb2.GetServerStatusRequest(), timeout=RPC_TIMEOUT_SECONDS)
        if (status.applied_invalidation_sequence >= sequence
                or status.watch_state != status_pb2.WATCH_STATE_CURRENT):
            return
        time.sleep(0.01)
    raise StepFailed(f"the CRM server did not apply invalidation sequence {sequence} "
                     f"within {APPLY_TIMEOUT_SECONDS} s (applied {status.applied_invalidation_sequence})")


def run_walkthrough(args):
    sys.path.insert(0, args.generated)
    from crm.auth.v1 import private_app_pb2, private_app_pb2_grpc, scope_pb2
    from crm.data.v1 import crm_service_pb2, crm_service_pb2_grpc, resources_pb2
    from crm.data.v1 import status_pb2, status_pb2_grpc

    auth_channel = grpc.insecure_channel(args.auth)
    crm_channel = grpc.insecure_channel(args.crm)
    apps = private_app_pb2_grpc.PrivateAppServiceStub(auth_channel)
    crm = crm_service_pb2_grpc.CrmServiceStub(crm_channel)
    crm_status = status_pb2_grpc.CrmStatusServiceStub(crm_channel)

    # 1. An operator creates an organization.
    admin_key = create_organization(args.crmctl)
    print("ok: crmctl created an organization and printed its admin key")

    # 2. The admin creates an app with Lead Read and Lead Create.
    lead_read = scope_pb2.Scope(module=scope_pb2.MODULE_LEAD, action=scope_pb2.ACTION_READ)
    lead_create = scope_pb2.Scope(module=scope_pb2.MODULE_LEAD, action=scope_pb2.ACTION_CREATE)
    created = apps.CreatePrivateApp(
        private_app_pb2.CreatePrivateAppRequest(private_app=private_app_pb2.PrivateApp(
            display_name="Lead sync", description="Imports web leads", scopes=[lead_create, lead_read])),
        metadata=bearer(admin_key), timeout=RPC_TIMEOUT_SECONDS)
    app = created.private_app
    expect(app.id != "", "CreatePrivateApp returned an app without an id")
    expect(app.display_name == "Lead sync", f"CreatePrivateApp returned display_name {app.display_name!r}")
    # Scopes come back sorted by module, then action: READ (1) before CREATE (2).
    expect(list(app.scopes) == [lead_read, lead_create],
           f"CreatePrivateApp returned scopes {describe_scopes(scope_pb2, app.scopes)}")
    expect(created.access_token.startswith("crmpat_"), "CreatePrivateApp returned no crmpat_ access token")
    expect(app.token_hint.endswith(created.access_token[-4:]),
           "the token hint does not end with the token's last four characters")
    print(f"ok: CreatePrivateApp created app {app.id} with Lead Read and Lead Create")

    # An app without a name is INVALID_ARGUMENT with a BadRequest naming the field.
    invalid = expect_rpc_error(
        lambda: apps.CreatePrivateApp(
            private_app_pb2.CreatePrivateAppRequest(private_app=private_app_pb2.PrivateApp(scopes=[lead_read])),
            metadata=bearer(admin_key), timeout=RPC_TIMEOUT_SECONDS),
        grpc.StatusCode.INVALID_ARGUMENT, "CreatePrivateApp without a display name")
    expect_error_info(invalid, "VALIDATION_FAILED", "auth.crm.example", "CreatePrivateApp without a display name")
    _, _, bad_request = error_details(invalid)
    expect(bad_request is not None, "CreatePrivateApp without a display name: no BadRequest in the details")
    fields = [violation.field for violation in bad_request.field_violations]
    expect(fields == ["private_app.display_name"],
           f"CreatePrivateApp without a display name: field violations name {fields}")
    expect(bad_request.field_violations[0].description != "",
           "the field violation of private_app.display_name has no description")
    print("ok: CreatePrivateApp without a name failed with a BadRequest naming private_app.display_name")

    # 3. Reveal the app's token.
    revealed = apps.GetAccessToken(private_app_pb2.GetAccessTokenRequest(id=app.id),
                                   metadata=bearer(admin_key), timeout=RPC_TIMEOUT_SECONDS)
    token = revealed.access_token
    expect(token == created.access_token, "GetAccessToken returned a token other than the one created")
    print("ok: GetAccessToken revealed the token CreatePrivateApp returned")

    # 4. The token creates and reads a lead.
    lead = crm.CreateLead(
        crm_service_pb2.CreateLeadRequest(lead=resources_pb2.Lead(
            first_name="Ada", last_name="Lovelace", email="ada@example.com")),
        metadata=bearer(token), timeout=RPC_TIMEOUT_SECONDS).lead
    expect(lead.id != "", "CreateLead returned a lead without an id")
    expect(lead.last_name == "Lovelace", f"CreateLead returned last_name {lead.last_name!r}")
    expect(lead.status == resources_pb2.LEAD_STATUS_NEW,
           f"CreateLead returned status {resources_pb2.LeadStatus.Name(lead.status)}, expected LEAD_STATUS_NEW")
    expect(lead.HasField("create_time"), "CreateLead returned no create_time")
    fetched = crm.GetLead(crm_service_pb2.GetLeadRequest(id=lead.id),
                          metadata=bearer(token), timeout=RPC_TIMEOUT_SECONDS).lead
    expect(fetched == lead, f"GetLead returned {fetched} instead of the created lead {lead}")
    print(f"ok: CreateLead created lead {lead.id} and GetLead returned it")

    # 5. Contacts are outside the app's scopes.
    denied = expect_rpc_error(
        lambda: crm.ListContacts(crm_service_pb2.ListContactsRequest(),
                                 metadata=bearer(token), timeout=RPC_TIMEOUT_SECONDS),
        grpc.StatusCode.PERMISSION_DENIED, "ListContacts without Contact Read")
    expect("CONTACT:READ" in denied.details(),
           f"the denial does not name the missing scope CONTACT:READ: {denied.details()!r}")
    info = expect_error_info(denied, "SCOPE_MISSING", "data.crm.example", "ListContacts without Contact Read")
    expect(info.metadata.get("required_scopes") == "CONTACT:READ",
           f"ErrorInfo metadata required_scopes is {info.metadata.get('required_scopes')!r}")
    expect(info.metadata.get("method") == "crm.data.v1.CrmService.ListContacts",
           f"ErrorInfo metadata method is {info.metadata.get('method')!r}")
    print("ok: ListContacts failed with PERMISSION_DENIED and ErrorInfo SCOPE_MISSING naming CONTACT:READ")

    # 6. Rotate: the old token is rejected, the new one works.
    rotated = apps.RotateAccessToken(private_app_pb2.RotateAccessTokenRequest(id=app.id),
                                     metadata=bearer(admin_key), timeout=RPC_TIMEOUT_SECONDS)
    new_token = rotated.access_token
    expect(new_token.startswith("crmpat_"), "RotateAccessToken returned no crmpat_ access token")
    expect(new_token != token, "RotateAccessToken returned the old token")
    expect(rotated.private_app.token_hint.endswith(new_token[-4:]),
           "the token hint after rotation does not match the new token")
    # A CRM server that caches token checks rejects the old token once its
    # invalidation stream has delivered the rotation.
    wait_until_applied(crm_status, status_pb2, rotated.invalidation_sequence)
    revoked = expect_rpc_error(
        lambda: crm.GetLead(crm_service_pb2.GetLeadRequest(id=lead.id),
                            metadata=bearer(token), timeout=RPC_TIMEOUT_SECONDS),
        grpc.StatusCode.UNAUTHENTICATED, "GetLead with the rotated-away token")
    expect_error_info(revoked, "TOKEN_INVALID", "data.crm.example", "GetLead with the rotated-away token")
    print("ok: GetLead with the old token failed with UNAUTHENTICATED and ErrorInfo TOKEN_INVALID")
    refetched = crm.GetLead(crm_service_pb2.GetLeadRequest(id=lead.id),
                            metadata=bearer(new_token), timeout=RPC_TIMEOUT_SECONDS).lead
    expect(refetched == lead, "GetLead with the new token returned another lead")
    print("ok: GetLead with the new token returned the lead")

    revealed_again = apps.GetAccessToken(private_app_pb2.GetAccessTokenRequest(id=app.id),
                                         metadata=bearer(admin_key), timeout=RPC_TIMEOUT_SECONDS)
    expect(revealed_again.access_token == new_token, "GetAccessToken after rotation did not return the new token")
    print("ok: GetAccessToken after rotation revealed the new token")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generated", required=True, help="folder with the generated *_pb2*.py modules")
    parser.add_argument("--auth", required=True, help="auth server address, HOST:PORT")
    parser.add_argument("--crm", required=True, help="CRM server address, HOST:PORT")
    parser.add_argument("--crmctl", required=True, help="path of tools/crmctl.sh")
    args = parser.parse_args()
    try:
        run_walkthrough(args)
    except StepFailed as failure:
        print(f"FAIL: {failure}")
        return 1
    except grpc.RpcError as error:
        print(f"FAIL: a call failed with {error.code().name}: {error.details()}")
        return 1
    print("python_client: every walkthrough step returned what the README says")
    return 0


if __name__ == "__main__":
    sys.exit(main())
