"""Seed page: "Outbound requests by Tentacle"."""

from __future__ import annotations

import pytest
import responses

from deployserver import Agent, AgentSettings, PackageNotAvailable

SERVER = "https://octopus.acme.internal:10943"


@pytest.mark.outbound_none
def test_a_listening_agent_never_connects_back_to_the_server(package):
    agent = Agent()  # listening mode is the default

    assert agent.poll() == []  # it waits for the server to connect
    with pytest.raises(PackageNotAvailable):
        agent.obtain_package("Acme.Web", "1.2.0")
    agent.receive_package(package)  # pushed by the server
    assert agent.obtain_package("Acme.Web", "1.2.0") is package


@pytest.mark.outbound_only("polling-connection")
def test_a_polling_agent_connects_back_to_the_server(outbound):
    agent = Agent(AgentSettings(mode="polling", server_url=SERVER))
    outbound.stub("polling-connection", json={"work": [{"task": "ServerTasks-1"}]})

    assert agent.poll() == [{"task": "ServerTasks-1"}]

    [request] = outbound.requests
    assert (request.host, request.port) == ("octopus.acme.internal", 10943)
    assert request.query == {"subscriptionId": [agent.settings.subscription_id]}


@pytest.mark.outbound_only("polling-connection")
def test_by_default_packages_come_from_the_server_not_nuget(outbound):
    agent = Agent(AgentSettings(mode="polling", server_url=SERVER))
    outbound.stub("polling-connection", body=b"PK nupkg")

    assert agent.obtain_package("Acme.Web", "1.2.0").content == b"PK nupkg"

    outbound.assert_not_contacted("api.nuget.org")


@pytest.mark.outbound_only("tentacle-nuget-downloads")
@responses.activate
def test_the_agent_downloads_from_nuget_only_with_the_option_on(outbound):
    responses.get(
        "https://api.nuget.org/v3/index.json",
        json={
            "resources": [
                {
                    "@id": "https://api.nuget.org/v3-flatcontainer/",
                    "@type": "PackageBaseAddress/3.0.0",
                }
            ]
        },
    )
    responses.get(
        "https://api.nuget.org/v3-flatcontainer/acme.web/1.2.0/acme.web.1.2.0.nupkg",
        body=b"PK nupkg",
    )
    agent = Agent(AgentSettings(download_directly_from_nuget=True))

    assert agent.obtain_package("Acme.Web", "1.2.0").content == b"PK nupkg"

    outbound.assert_contacted("tentacle-nuget-downloads", count=2)


@pytest.mark.outbound_only("certificate-revocation")
def test_certificate_revocation_list_checking(outbound):
    outbound.stub("certificate-revocation", body=b"0a1b2c\n3d4e5f\n")
    agent = Agent()

    assert agent.is_revoked("3D4E5F")
    assert not agent.is_revoked("777777")  # looks in every list

    assert {r.host for r in outbound.requests} == {"crl.microsoft.com", "crl3.digicert.com"}
    assert {r.scheme for r in outbound.requests} == {"http"}


@pytest.mark.outbound_expect("root-certificate-updates", count=1)
def test_automatic_root_certificate_updates(outbound):
    outbound.stub("root-certificate-updates", body=b"MSCF signed trust list")

    assert Agent().update_root_certificates() == b"MSCF signed trust list"
