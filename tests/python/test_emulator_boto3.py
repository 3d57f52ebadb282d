"""The emulator's control plane through boto3: the SSM operations Porthole uses, their paging,
filters and error shapes, as a Python user of the AWS SDK sees them.

Run by tests/emulator_boto3.rs, which starts the emulator (the built-in nodes plus 12 generated
ones, i-0b000000000000000 … i-0b00000000000000b, tagged batch=generated) and sets
PORTHOLE_EMULATOR_URL. By hand: `porthole emulator`, then
`PORTHOLE_EMULATOR_URL=http://127.0.0.1:PORT $(scripts/python-venv)/bin/python -m pytest tests/python`.
"""

import datetime
import os
import re

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

URL = os.environ["PORTHOLE_EMULATOR_URL"]
NODE = "i-0a1b2c3d4e5f60001"  # built-in: online, Linux, tags Name=web-1, env=prod, team=web
HYBRID = "mi-0a1b2c3d4e5f60003"  # built-in: online, a hybrid managed instance
OFFLINE = "i-0a1b2c3d4e5f60004"  # built-in: ConnectionLost
ACCESS_KEY = "AKIDBOTO"
OWNER = f"arn:aws:iam::000000000000:user/{ACCESS_KEY}"


def client(service, access_key=ACCESS_KEY):
    return boto3.client(
        service,
        endpoint_url=URL,
        region_name="us-east-1",
        aws_access_key_id=access_key,
        aws_secret_access_key="secret",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


@pytest.fixture(scope="module")
def ssm():
    return client("ssm")


def error_of(call, **kwargs):
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    error = info.value.response["Error"]
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return error["Code"], error["Message"]


def all_sessions(ssm, state, **kwargs):
    pages = ssm.get_paginator("describe_sessions").paginate(State=state, **kwargs)
    return [s for page in pages for s in page["Sessions"]]


def test_start_describe_resume_terminate(ssm):
    reason = "INC-7: restart the web server"
    started = ssm.start_session(Target=NODE, Reason=reason)
    session_id = started["SessionId"]
    assert session_id.startswith(f"{ACCESS_KEY}-")
    assert re.fullmatch(
        rf"ws://127\.0\.0\.1:\d+/v1/data-channel/{re.escape(session_id)}\?role=publish_subscribe",
        started["StreamUrl"],
    )
    assert started["TokenValue"]

    [active] = [s for s in all_sessions(ssm, "Active") if s["SessionId"] == session_id]
    assert active["Target"] == NODE
    assert active["Owner"] == OWNER
    assert active["Reason"] == reason
    assert active["DocumentName"] == "SSM-SessionManagerRunShell"
    assert active["Status"] in ("Connecting", "Connected")
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - active["StartDate"]).total_seconds()) < 60
    assert "EndDate" not in active

    resumed = ssm.resume_session(SessionId=session_id)
    assert resumed["SessionId"] == session_id
    assert resumed["StreamUrl"] == started["StreamUrl"]
    assert resumed["TokenValue"] and resumed["TokenValue"] != started["TokenValue"]

    assert ssm.terminate_session(SessionId=session_id)["SessionId"] == session_id
    assert session_id not in {s["SessionId"] for s in all_sessions(ssm, "Active")}
    [ended] = [s for s in all_sessions(ssm, "History") if s["SessionId"] == session_id]
    assert ended["Status"] in ("Terminating", "Terminated")
    assert ended["EndDate"] >= ended["StartDate"]
    # Terminating again is fine; resuming is not.
    assert ssm.terminate_session(SessionId=session_id)["SessionId"] == session_id
    code, message = error_of(ssm.resume_session, SessionId=session_id)
    assert code == "DoesNotExistException"
    assert "terminated" in message


def test_interactive_command_document(ssm):
    started = ssm.start_session(
        Target=NODE,
        DocumentName="AWS-StartInteractiveCommand",
        Parameters={"command": ["uptime"]},
    )
    sessions = all_sessions(
        ssm, "Active", Filters=[{"key": "SessionId", "value": started["SessionId"]}]
    )
    assert [s["DocumentName"] for s in sessions] == ["AWS-StartInteractiveCommand"]
    ssm.terminate_session(SessionId=started["SessionId"])


def test_start_session_errors(ssm):
    assert error_of(ssm.start_session, Target="i-nope")[0] == "InvalidTarget"
    assert error_of(ssm.start_session, Target=OFFLINE) == (
        "TargetNotConnected",
        f"{OFFLINE} is not connected.",
    )
    code, message = error_of(ssm.start_session, Target=NODE, DocumentName="AWS-RunShellScript")
    assert code == "InvalidDocument" and "AWS-RunShellScript" in message
    code, message = error_of(ssm.start_session, Target=NODE, Reason="x" * 257)
    assert code == "ValidationException" and "'reason'" in message
    code, message = error_of(
        ssm.start_session, Target=NODE, DocumentName="AWS-StartInteractiveCommand"
    )
    assert code == "ValidationException" and "'command'" in message
    code, message = error_of(
        ssm.start_session,
        Target=NODE,
        DocumentName="AWS-StartInteractiveCommand",
        Parameters={"command": ["a", "b"]},
    )
    assert code == "ValidationException" and "'command'" in message


def test_unknown_sessions(ssm):
    assert error_of(ssm.resume_session, SessionId="AKIDBOTO-0")[0] == "DoesNotExistException"
    assert error_of(ssm.terminate_session, SessionId="AKIDBOTO-0")[0] == "DoesNotExistException"


def instance_ids(ssm, **kwargs):
    pages = ssm.get_paginator("describe_instance_information").paginate(**kwargs)
    return [i["InstanceId"] for page in pages for i in page["InstanceInformationList"]]


def test_describe_instance_information(ssm):
    reply = ssm.describe_instance_information()
    assert "NextToken" not in reply
    listed = reply["InstanceInformationList"]
    ids = [i["InstanceId"] for i in listed]
    assert ids == sorted(ids) and len(ids) == 16
    [web] = [i for i in listed if i["InstanceId"] == NODE]
    assert web["PingStatus"] == "Online"
    assert web["PlatformType"] == "Linux"
    assert web["PlatformName"] == "Amazon Linux"
    assert web["ResourceType"] == "EC2Instance"
    assert web["IsLatestVersion"] is True
    assert web["IPAddress"] == "127.0.0.1"
    assert web["Name"] == "web-1" and web["ComputerName"] == "web-1"
    assert isinstance(web["LastPingDateTime"], datetime.datetime)
    [hybrid] = [i for i in listed if i["InstanceId"] == HYBRID]
    assert hybrid["ResourceType"] == "ManagedInstance"


def test_describe_instance_information_pages(ssm):
    everything = [i["InstanceId"] for i in ssm.describe_instance_information()["InstanceInformationList"]]
    pages = list(
        ssm.get_paginator("describe_instance_information").paginate(
            PaginationConfig={"PageSize": 5}
        )
    )
    assert [len(p["InstanceInformationList"]) for p in pages] == [5, 5, 5, 1]
    assert [i["InstanceId"] for p in pages for i in p["InstanceInformationList"]] == everything


def test_describe_instance_information_filters(ssm):
    def by(key, *values):
        return instance_ids(ssm, Filters=[{"Key": key, "Values": list(values)}])

    def by_legacy(key, *values):
        return instance_ids(
            ssm, InstanceInformationFilterList=[{"key": key, "valueSet": list(values)}]
        )

    assert by("InstanceIds", NODE, HYBRID, "i-nope") == [NODE, HYBRID]
    assert by_legacy("InstanceIds", NODE) == [NODE]
    assert OFFLINE in by("PingStatus", "ConnectionLost")
    assert OFFLINE not in by_legacy("PingStatus", "Online")
    assert by("PlatformTypes", "Windows") == ["i-0b000000000000000"]
    assert by("ResourceType", "ManagedInstance") == [HYBRID]
    assert NODE in by("AgentVersion", ssm.describe_instance_information(
        Filters=[{"Key": "InstanceIds", "Values": [NODE]}]
    )["InstanceInformationList"][0]["AgentVersion"])
    assert by("tag:team", "web") == [NODE]
    assert len(by("tag:batch", "generated")) == 12
    assert by("tag-key", "team") == sorted(by("tag-key", "team"))
    assert len(by("tag-key", "team")) == 4


def test_describe_instance_information_errors(ssm):
    code, message = error_of(ssm.describe_instance_information, MaxResults=51)
    assert code == "ValidationException" and "'maxResults'" in message
    assert error_of(ssm.describe_instance_information, NextToken="bogus")[0] == "InvalidNextToken"
    code, message = error_of(
        ssm.describe_instance_information, Filters=[{"Key": "Colour", "Values": ["red"]}]
    )
    assert code == "InvalidFilterKey" and "Colour" in message
    code, _ = error_of(
        ssm.describe_instance_information, Filters=[{"Key": "PingStatus", "Values": ["Up"]}]
    )
    assert code == "InvalidInstanceInformationFilterValue"


def test_list_tags_for_resource(ssm):
    reply = ssm.list_tags_for_resource(ResourceType="ManagedInstance", ResourceId=NODE)
    assert reply["TagList"] == [
        {"Key": "Name", "Value": "web-1"},
        {"Key": "env", "Value": "prod"},
        {"Key": "team", "Value": "web"},
    ]
    code, _ = error_of(ssm.list_tags_for_resource, ResourceType="ManagedInstance", ResourceId="mi-x")
    assert code == "InvalidResourceId"


def test_describe_sessions_filters_and_pages(ssm):
    other = client("ssm", access_key="AKIDBOTOOTHER")
    before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)
    mine = {ssm.start_session(Target=t)["SessionId"] for t in (NODE, HYBRID, NODE, HYBRID, NODE)}
    theirs = other.start_session(Target=NODE)["SessionId"]
    try:
        def ids(**kwargs):
            return {s["SessionId"] for s in all_sessions(ssm, "Active", **kwargs)}

        def by(key, value):
            return ids(Filters=[{"key": key, "value": value}])

        assert mine | {theirs} <= ids()
        assert by("Owner", OWNER) >= mine and theirs not in by("Owner", OWNER)
        assert by("Owner", "AKIDBOTOOTHER") == {theirs}
        assert by("SessionId", theirs) == {theirs}
        on_hybrid = by("Target", HYBRID) & mine
        assert len(on_hybrid) == 2
        assert mine <= by("Status", "Connecting")
        assert mine | {theirs} <= by("InvokedAfter", before.strftime("%Y-%m-%dT%H:%M:%SZ"))
        assert not by("InvokedBefore", before.strftime("%Y-%m-%dT%H:%M:%SZ")) & mine

        everything = all_sessions(ssm, "Active")
        pages = list(
            ssm.get_paginator("describe_sessions").paginate(
                State="Active", PaginationConfig={"PageSize": 2}
            )
        )
        assert all(len(p["Sessions"]) <= 2 for p in pages)
        assert [s["SessionId"] for p in pages for s in p["Sessions"]] == [
            s["SessionId"] for s in everything
        ]
        starts = [s["StartDate"] for s in everything]
        assert starts == sorted(starts, reverse=True), "newest first"
    finally:
        for session_id in mine:
            ssm.terminate_session(SessionId=session_id)
        other.terminate_session(SessionId=theirs)
    assert mine | {theirs} <= {s["SessionId"] for s in all_sessions(ssm, "History")}


def test_describe_sessions_errors(ssm):
    code, message = error_of(ssm.describe_sessions, State="Active", MaxResults=201)
    assert code == "ValidationException" and "'maxResults'" in message
    assert error_of(ssm.describe_sessions, State="History", NextToken="x")[0] == "InvalidNextToken"
    code, message = error_of(
        ssm.describe_sessions, State="Active", Filters=[{"key": "Colour", "value": "red"}]
    )
    assert code == "InvalidFilterKey"


def test_kms_data_keys():
    kms = client("kms")
    context = {"aws:ssm:SessionId": "AKIDBOTO-1", "aws:ssm:TargetId": NODE}
    key = kms.generate_data_key(
        KeyId="alias/porthole-boto3", KeySpec="AES_256", EncryptionContext=context
    )
    assert len(key["Plaintext"]) == 32
    assert key["KeyId"] == "arn:aws:kms:us-east-1:000000000000:alias/porthole-boto3"
    opened = kms.decrypt(CiphertextBlob=key["CiphertextBlob"], EncryptionContext=context)
    assert opened["Plaintext"] == key["Plaintext"]
    assert opened["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    with pytest.raises(ClientError) as info:
        kms.decrypt(CiphertextBlob=key["CiphertextBlob"], EncryptionContext={})
    assert info.value.response["Error"]["Code"] == "InvalidCiphertextException"
