"""Seed page: "Outbound requests by Octopus" (items 1, 2, 3 and 5; 4 is in test_update_check.py)."""

from __future__ import annotations

import pytest
import responses

from deployserver import AzureWebApp, ListeningTentacle, Server, ServerSettings

WEB_01 = ListeningTentacle("web-01.tentacles.acme.internal")
NUGET_INDEX = {
    "version": "3.0.0",
    "resources": [
        {"@id": "https://api.nuget.org/v3-flatcontainer/", "@type": "PackageBaseAddress/3.0.0"}
    ],
}
NUPKG = "https://api.nuget.org/v3-flatcontainer/acme.web/1.2.0/acme.web.1.2.0.nupkg"


# 1. Pushing packages and deployment instructions, and checking the health, of Tentacles


@pytest.mark.outbound_only("tentacle-communication")
def test_health_check_of_a_listening_tentacle(outbound, server):
    outbound.stub("tentacle-communication", json={"status": "healthy"})

    assert server.check_health(WEB_01)

    [request] = outbound.requests
    assert request.url == "https://web-01.tentacles.acme.internal:10933/health"


@pytest.mark.outbound_only("tentacle-communication")
def test_deploying_to_a_tentacle_pushes_the_package_then_the_instructions(
    outbound, server, package
):
    # an entry is a destination name or, as here, a host pattern
    outbound.stub("web-01.tentacles.acme.internal", method="POST", json={"taskId": "ServerTasks-1"})

    assert server.deploy(package, WEB_01) == "ServerTasks-1"

    assert [r.path for r in outbound.requests] == ["/packages/Acme.Web.1.2.0.nupkg", "/scripts"]
    outbound.assert_not_contacted("azure")  # Azure traffic only for Azure targets


# 2. Downloading packages from the NuGet feeds that you configure (responses used directly)


@responses.activate
def test_packages_come_from_the_default_nuget_feed(outbound, server):
    responses.get("https://api.nuget.org/v3/index.json", json=NUGET_INDEX)
    responses.get(NUPKG, body=b"PK nupkg")

    package = server.download_package("Acme.Web", "1.2.0")

    assert package.content == b"PK nupkg"
    outbound.assert_contacted("nuget-feeds", count=2)


@pytest.mark.outbound_allow("nuget.acme.internal")  # this installation's own feed
@responses.activate
def test_packages_come_from_the_feeds_you_configure_in_order(outbound, settings):
    settings.nuget_feeds = ("https://nuget.acme.internal/v3/index.json", *settings.nuget_feeds)
    own = {
        "resources": [
            {"@id": "https://nuget.acme.internal/flat/", "@type": "PackageBaseAddress/3.0.0"}
        ]
    }
    responses.get("https://nuget.acme.internal/v3/index.json", json=own)
    responses.get(
        "https://nuget.acme.internal/flat/acme.web/1.2.0/acme.web.1.2.0.nupkg", status=404
    )
    responses.get("https://api.nuget.org/v3/index.json", json=NUGET_INDEX)
    responses.get(NUPKG, body=b"PK nupkg")

    assert Server(settings).download_package("Acme.Web", "1.2.0").content == b"PK nupkg"

    hosts = [r.host for r in outbound.requests]
    assert hosts == ["nuget.acme.internal", "nuget.acme.internal", "api.nuget.org", "api.nuget.org"]


# 3. Windows Azure traffic (only when deploying to an Azure deployment target; respx used directly)

AZURE_APP = AzureWebApp(
    subscription_id="0000-sub",
    resource_group="web",
    site="acme-web",
    tenant_id="acme.onmicrosoft.com",
    client_id="deployer",
    client_secret="s3cret",
)


@pytest.mark.outbound_only("azure")
def test_deploying_to_an_azure_web_app(outbound, server, package, respx_mock):
    respx_mock.post(
        "https://login.microsoftonline.com/acme.onmicrosoft.com/oauth2/v2.0/token"
    ).respond(json={"access_token": "t0ken"})
    site = {
        "properties": {
            "hostNameSslStates": [
                {"name": "acme-web.azurewebsites.net", "hostType": "Standard"},
                {"name": "acme-web.scm.azurewebsites.net", "hostType": "Repository"},
            ]
        }
    }
    respx_mock.get(url__startswith="https://management.azure.com/subscriptions/0000-sub/").respond(
        json=site
    )
    respx_mock.post("https://acme-web.scm.azurewebsites.net/api/zipdeploy").respond(
        202, headers={"Location": "https://acme-web.scm.azurewebsites.net/api/deployments/1"}
    )

    assert server.deploy(package, AZURE_APP).endswith("/api/deployments/1")

    assert [r.host for r in outbound.to("azure")] == [
        "login.microsoftonline.com",
        "management.azure.com",
        "acme-web.scm.azurewebsites.net",
    ]


# 5. Checking for updated community contributed step templates (if enabled)


@pytest.mark.outbound_only("community-step-templates")
def test_community_step_templates_come_from_library_octopus_com(outbound, settings):
    settings.check_for_updates = False
    outbound.stub("community-step-templates", json=[{"Name": "Slack - Send Message"}])

    Server(settings).run_scheduled_tasks()

    [request] = outbound.to("library.octopus.com")
    assert request.url == "https://library.octopus.com/api/step-templates"
    outbound.assert_not_contacted("octopus.com")  # updates are opted out


@pytest.mark.outbound_none
def test_no_step_template_checks_when_disabled(settings: ServerSettings):
    settings.community_step_templates = False

    assert Server(settings).update_step_templates() is None
