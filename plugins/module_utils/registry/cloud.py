# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Registry credentials from cloud APIs, for the auth kinds ``ecr``, ``gcr`` and ``acr`` (``auth.resolve_credentials``).

- Amazon ECR: ``AWS`` and the password in boto3's ``ecr.get_authorization_token``;
- Google Container/Artifact Registry: ``oauth2accesstoken`` and a google-auth access token;
- Azure Container Registry: an Azure AD access token exchanged at ``/oauth2/exchange`` for a refresh token.

A module of its own so that a run against other registries does not compile it.
"""

from __future__ import annotations

import base64

from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import ClusterError, ConnectionConfigError, first_line
from ansible_collections.ferry.kube.plugins.module_utils.registry.auth import ECR_HOST_RE, Credentials, scrub
from ansible_collections.ferry.kube.plugins.module_utils.registry.errors import RegistryAuthError, RegistryError

GCR_USERNAME = 'oauth2accesstoken'
ACR_REFRESH_USERNAME = '00000000-0000-0000-0000-000000000000'
ACR_AAD_AUDIENCE = 'https://management.azure.com'  # ACR's /oauth2/exchange takes ARM tokens
ACR_AAD_SCOPE = ACR_AAD_AUDIENCE + '/.default'


def credentials(kind, config, host, option, request=None):
    """``Credentials`` for a cloud registry's config: user name and password when given (GCR, ACR), else from the cloud API."""
    username, password = config.get('username'), config.get('password')
    if kind == 'ecr':
        return ecr_credentials(config.get('ecr') or {}, host, option)
    if kind == 'gcr':
        if username or password:
            return Credentials(username, password, kind='gcr')
        return Credentials(GCR_USERNAME, google_access_token(config.get('gcr') or {}, option), kind='gcr')
    if username and password:  # an admin user, a scope-map token, or a service principal's id and secret
        return Credentials(username, password, kind='acr')
    return acr_credentials(config.get('acr') or {}, host, option, request)


def ecr_credentials(options, host, option):
    """``AWS`` and the password of ``ecr:GetAuthorizationToken`` for the registry's account and region."""
    try:
        import boto3  # pylint: disable=import-outside-toplevel
        import botocore.exceptions  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise RegistryError('Amazon ECR needs the Python library boto3: pip install boto3') from None
    match = ECR_HOST_RE.match(host or '')
    region = options.get('region') or (match.group('region') if match else None)
    kwargs = {}
    if options.get('profile'):
        kwargs['profile_name'] = options['profile']
    if options.get('access_key'):
        kwargs.update(aws_access_key_id=options['access_key'], aws_secret_access_key=options.get('secret_key'),
                      aws_session_token=options.get('session_token'))
    if region:
        kwargs['region_name'] = region
    try:
        session = boto3.session.Session(**kwargs)
    except botocore.exceptions.ProfileNotFound as exc:
        raise RegistryError('%s.ecr.profile: %s; name a profile from ~/.aws/config' % (option, exc)) from None
    if not session.region_name:
        raise RegistryError('%s.ecr.region is not set and registry host %s does not name one: give the ECR region (or set AWS_REGION)'
                            % (option, host))
    registry_id = options.get('registry_id') or (match.group('account') if match else None)
    try:
        client = session.client('ecr', endpoint_url=options.get('endpoint_url'))
        answer = client.get_authorization_token(**({'registryIds': [registry_id]} if registry_id else {}))
        data = answer['authorizationData'][0]
    except botocore.exceptions.NoCredentialsError:
        raise RegistryError('no AWS credentials for ECR registry %s: set %s.ecr.access_key and secret_key, %s.ecr.profile, '
                            'or the AWS_* variables' % (host, option, option)) from None
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise RegistryAuthError('cannot get an ECR authorization token for %s (%s.ecr): %s' % (host, option, first_line(exc))) from None
    username, _sep, password = base64.b64decode(data['authorizationToken']).decode('utf-8').partition(':')
    creds = Credentials(username, password, kind='ecr', preemptive=True)
    creds.endpoint = data.get('proxyEndpoint')
    return creds


def _cloud_detail(exc):
    """The reason in a cloud_auth error, without its Kubernetes wording ("... for GKE: <reason>")."""
    return str(exc).split(': ', 1)[-1]


def google_access_token(options, option):
    """An OAuth2 access token from ``gcr.access_token``, a service-account key, or application default credentials.

    The token comes from the same google-auth code as GKE connections (``kube.cloud_auth``), with registry wording.
    """
    if options.get('access_token'):
        return options['access_token']
    from ansible_collections.ferry.kube.plugins.module_utils.kube import cloud_auth  # pylint: disable=import-outside-toplevel
    try:
        return cloud_auth.gke_credentials(options).token
    except ConnectionConfigError as exc:
        raise RegistryError('%s.gcr credentials are not a valid service-account key: %s' % (option, _cloud_detail(exc))) from None
    except ClusterError as exc:
        if 'google-auth' in str(exc) and 'pip install' in str(exc):
            raise RegistryError('Google Container/Artifact Registry needs the Python library google-auth: pip install google-auth') from None
        raise RegistryAuthError('cannot get a Google access token for the registry (%s.gcr): %s' % (option, _cloud_detail(exc))) from None


def azure_ad_token(options, option, **credential_kwargs):
    """An Azure AD access token for ACR's exchange: ``acr.access_token``, a service principal, or the default credential chain.

    Acquired by the same azure-identity code as AKS connections (``kube.cloud_auth``), for the ARM audience.
    """
    if options.get('access_token'):
        return options['access_token']
    if options.get('client_secret'):
        missing = [key for key in ('tenant_id', 'client_id') if not options.get(key)]
        if missing:
            raise RegistryError('%s.acr needs %s with client_secret' % (option, ', '.join('%s.acr.%s' % (option, m) for m in missing)))
    from ansible_collections.ferry.kube.plugins.module_utils.kube import cloud_auth  # pylint: disable=import-outside-toplevel
    try:
        return cloud_auth.aks_token(dict(options, server_app_id=ACR_AAD_AUDIENCE), **credential_kwargs)
    except ClusterError as exc:
        if 'azure-identity' in str(exc) and 'pip install' in str(exc):
            raise RegistryError('Azure Container Registry needs the Python library azure-identity: pip install azure-identity') from None
        raise RegistryAuthError('cannot get an Azure AD token for the registry (%s.acr): %s' % (option, _cloud_detail(exc))) from None


def acr_credentials(options, host, option, request, **credential_kwargs):
    """An ACR refresh token: the Azure AD token exchanged at ``https://<registry>/oauth2/exchange``."""
    aad_token = azure_ad_token(options, option, **credential_kwargs)
    form = {'grant_type': 'access_token', 'service': host, 'access_token': aad_token}
    if options.get('tenant_id'):
        form['tenant'] = options['tenant_id']
    response = request('POST', 'https://%s/oauth2/exchange' % host, data=form)
    if response.status_code in (401, 403):
        raise RegistryAuthError('Azure Container Registry %s refused the Azure AD token at /oauth2/exchange (HTTP %d): the identity in '
                                '%s.acr needs a role on the registry (AcrPull to read, AcrPush to write)' % (host, response.status_code, option))
    if response.status_code != 200:
        raise RegistryError('Azure Container Registry %s answered HTTP %d to the token exchange: %s'
                            % (host, response.status_code, scrub(response.text[:300], [aad_token])))
    try:
        refresh = response.json()['refresh_token']
    except (ValueError, KeyError):
        raise RegistryError('Azure Container Registry %s answered the token exchange without a refresh_token' % host) from None
    creds = Credentials(ACR_REFRESH_USERNAME, None, refresh_token=refresh, kind='acr')
    creds.aad_token = aad_token
    return creds
