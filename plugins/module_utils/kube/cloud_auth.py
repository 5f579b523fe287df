# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Short-lived Kubernetes API tokens from cloud credentials: EKS, GKE and AKS.

Each ``<provider>_endpoint(options, cluster_params)`` returns ``{host, token, ca_data, name}``
for ``connection.connect``. Tokens are never logged or returned by modules.
"""

from __future__ import annotations

import base64
import json

from ansible.module_utils.basic import env_fallback
from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import ClusterError, ConnectionConfigError, first_line


# Application ID of the "Azure Kubernetes Service AAD Server": the audience of AKS AAD tokens.
AKS_AAD_SERVER_APP_ID = '6dae42f8-4368-4678-94ff-3960e28e3630'
GKE_SCOPES = ['https://www.googleapis.com/auth/cloud-platform']
EKS_TOKEN_PREFIX = 'k8s-aws-v1.'
_EKS_ID_HEADER = 'x-k8s-aws-id'


def env(*names):
    """An Ansible ``fallback`` reading the first set environment variable of ``names``."""
    return (env_fallback, list(names))


def eks_spec():
    return dict(
        cluster_name=dict(type='str', required=True),
        region=dict(type='str', fallback=env('AWS_REGION', 'AWS_DEFAULT_REGION')),
        profile=dict(type='str', fallback=env('AWS_PROFILE')),
        access_key=dict(type='str', no_log=False, aliases=['aws_access_key_id'], fallback=env('AWS_ACCESS_KEY_ID', 'AWS_ACCESS_KEY')),
        secret_key=dict(type='str', no_log=True, aliases=['aws_secret_access_key'], fallback=env('AWS_SECRET_ACCESS_KEY', 'AWS_SECRET_KEY')),
        session_token=dict(type='str', no_log=True, fallback=env('AWS_SESSION_TOKEN', 'AWS_SECURITY_TOKEN')),
        role_arn=dict(type='str'),
        endpoint_url=dict(type='str'),
        sts_endpoint_url=dict(type='str'),
    )


def gke_spec():
    return dict(
        project=dict(type='str', fallback=env('GCP_PROJECT', 'GOOGLE_CLOUD_PROJECT')),
        location=dict(type='str'),
        cluster_name=dict(type='str'),
        credentials_file=dict(type='path', fallback=env('GCP_SERVICE_ACCOUNT_FILE', 'GCE_CREDENTIALS_FILE_PATH', 'GOOGLE_APPLICATION_CREDENTIALS')),
        credentials=dict(type='str', no_log=True),
        access_token=dict(type='str', no_log=True),
        container_api_url=dict(type='str', default='https://container.googleapis.com'),
    )


def aks_spec():
    return dict(
        tenant_id=dict(type='str', fallback=env('AZURE_TENANT', 'AZURE_TENANT_ID')),
        client_id=dict(type='str', fallback=env('AZURE_CLIENT_ID')),
        client_secret=dict(type='str', no_log=True, fallback=env('AZURE_SECRET', 'AZURE_CLIENT_SECRET')),
        authority_host=dict(type='str', default='login.microsoftonline.com'),
        server_app_id=dict(type='str', default=AKS_AAD_SERVER_APP_ID),
    )


# -- EKS ------------------------------------------------------------------------------------------

def _aws():
    """(boto3, botocore.exceptions), imported when AWS is used: boto3 costs about 0.4 s to import."""
    try:
        import boto3  # pylint: disable=import-outside-toplevel
        import botocore.exceptions  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise ClusterError('EKS connections and EBS snapshots need the Python library boto3: pip install boto3') from None
    return boto3, botocore.exceptions


def eks_session(options):
    boto3, aws_errors = _aws()
    kwargs = {}
    if options.get('profile'):
        kwargs['profile_name'] = options['profile']
    if options.get('access_key'):
        kwargs['aws_access_key_id'] = options['access_key']
        kwargs['aws_secret_access_key'] = options.get('secret_key')
        kwargs['aws_session_token'] = options.get('session_token')
    if options.get('region'):
        kwargs['region_name'] = options['region']
    try:
        session = boto3.session.Session(**kwargs)
    except aws_errors.ProfileNotFound as exc:
        raise ConnectionConfigError('eks.profile: %s; name a profile from ~/.aws/config' % exc) from None
    if not session.region_name:
        raise ConnectionConfigError('eks.region is not set: give the region of cluster %s (or set AWS_REGION)' % options['cluster_name'])
    if options.get('role_arn'):
        session = _assume_role(session, options)
    return session


def _assume_role(session, options):
    boto3, aws_errors = _aws()
    sts = session.client('sts', endpoint_url=options.get('sts_endpoint_url'))
    try:
        creds = sts.assume_role(RoleArn=options['role_arn'], RoleSessionName='ferry')['Credentials']
    except aws_errors.ClientError as exc:
        raise ClusterError('cannot assume role %s for EKS cluster %s: %s' % (options['role_arn'], options['cluster_name'], exc)) from None
    return boto3.session.Session(aws_access_key_id=creds['AccessKeyId'], aws_secret_access_key=creds['SecretAccessKey'],
                                 aws_session_token=creds['SessionToken'], region_name=session.region_name)


def eks_token(session, cluster_name, sts_endpoint_url=None):
    """The token ``aws eks get-token`` makes: a presigned STS GetCallerIdentity URL naming the cluster."""
    aws_errors = _aws()[1]
    sts = session.client('sts', endpoint_url=sts_endpoint_url)

    def keep_cluster_id(params, context, **_kwargs):
        if _EKS_ID_HEADER in params:
            context[_EKS_ID_HEADER] = params.pop(_EKS_ID_HEADER)

    def sign_cluster_id(request, **_kwargs):
        if _EKS_ID_HEADER in request.context:
            request.headers[_EKS_ID_HEADER] = request.context[_EKS_ID_HEADER]

    sts.meta.events.register('provide-client-params.sts.GetCallerIdentity', keep_cluster_id)
    sts.meta.events.register('before-sign.sts.GetCallerIdentity', sign_cluster_id)
    try:
        url = sts.generate_presigned_url('get_caller_identity', Params={_EKS_ID_HEADER: cluster_name}, ExpiresIn=60, HttpMethod='GET')
    except aws_errors.BotoCoreError as exc:
        raise ClusterError('cannot sign an EKS token for %s: %s (check the AWS credentials)' % (cluster_name, exc)) from None
    return EKS_TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode('utf-8')).decode('ascii').rstrip('=')


def eks_endpoint(options, cluster_params):
    session = eks_session(options)
    aws_errors = _aws()[1]
    name = options['cluster_name']
    host, ca_data = cluster_params.get('host'), None
    if not host:
        eks = session.client('eks', endpoint_url=options.get('endpoint_url'))
        try:
            described = eks.describe_cluster(name=name)['cluster']
        except aws_errors.ClientError as exc:
            code = exc.response.get('Error', {}).get('Code')
            if code == 'ResourceNotFoundException':
                raise ClusterError('EKS cluster "%s" does not exist in region %s: check eks.cluster_name and eks.region'
                                   % (name, session.region_name)) from None
            raise ClusterError('cannot describe EKS cluster "%s": %s' % (name, exc)) from None
        except aws_errors.NoCredentialsError:
            raise ClusterError('no AWS credentials for EKS cluster "%s": set eks.access_key/secret_key, eks.profile, or AWS_* variables' % name) from None
        host = described['endpoint']
        ca_data = base64.b64decode(described.get('certificateAuthority', {}).get('data') or '') or None
    token = eks_token(session, name, options.get('sts_endpoint_url'))
    return {'host': host, 'token': token, 'ca_data': ca_data, 'name': 'eks/%s' % name}


# -- GKE ------------------------------------------------------------------------------------------

def gke_credentials(options, purpose='gke'):
    """google-auth credentials for the options (service-account JSON, a file, or the ADC chain); ``purpose``
    (the option they come from) names them in errors."""
    try:
        import google.auth  # pylint: disable=import-outside-toplevel
        import google.auth.transport.requests  # pylint: disable=import-outside-toplevel
        from google.oauth2 import service_account  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise ClusterError('GKE connections need the Python library google-auth: pip install google-auth requests') from None
    try:
        if options.get('credentials'):
            info = json.loads(options['credentials'])
            creds = service_account.Credentials.from_service_account_info(info, scopes=GKE_SCOPES)
        elif options.get('credentials_file'):
            creds = service_account.Credentials.from_service_account_file(options['credentials_file'], scopes=GKE_SCOPES)
        else:
            creds, _project = google.auth.default(scopes=GKE_SCOPES)
        creds.refresh(google.auth.transport.requests.Request())
    except (ValueError, KeyError) as exc:
        raise ConnectionConfigError('%s credentials are not a valid service-account key: %s' % (purpose, exc)) from None
    except Exception as exc:  # pylint: disable=broad-except
        raise ClusterError('cannot get a Google access token for %s: %s' % (purpose, first_line(exc))) from None
    return creds


def google_session(options, purpose):
    """A requests session authenticated by the options' access token, service-account key or the ADC chain."""
    import requests  # pylint: disable=import-outside-toplevel
    if options.get('access_token'):
        session = requests.Session()
        session.headers['Authorization'] = 'Bearer ' + options['access_token']
        return session
    from google.auth.transport.requests import AuthorizedSession  # pylint: disable=import-outside-toplevel
    return AuthorizedSession(gke_credentials(options, purpose))  # (it refreshes the token when it expires)


def gke_endpoint(options, cluster_params):
    token = options.get('access_token')
    if not token:
        token = gke_credentials(options).token
    host, ca_data = cluster_params.get('host'), None
    if not host:
        missing = [k for k in ('project', 'location', 'cluster_name') if not options.get(k)]
        if missing:
            raise ConnectionConfigError('gke needs %s to look the cluster up (or set cluster option "host")' % ', '.join('gke.' + m for m in missing))
        described = _gke_describe(options, token)
        host = 'https://' + described['endpoint']
        ca_data = base64.b64decode((described.get('masterAuth') or {}).get('clusterCaCertificate') or '') or None
    return {'host': host, 'token': token, 'ca_data': ca_data, 'name': 'gke/%s' % (options.get('cluster_name') or host)}


def _gke_describe(options, token):
    import requests  # pylint: disable=import-outside-toplevel
    url = '%s/v1/projects/%s/locations/%s/clusters/%s' % (options['container_api_url'].rstrip('/'), options['project'],
                                                          options['location'], options['cluster_name'])
    try:
        response = requests.get(url, headers={'Authorization': 'Bearer ' + token}, timeout=30)
    except requests.RequestException as exc:
        raise ClusterError('cannot reach the GKE API at %s: %s' % (options['container_api_url'], first_line(exc))) from None
    if response.status_code == 404:
        raise ClusterError('GKE cluster %s not found in project %s, location %s' % (options['cluster_name'], options['project'], options['location']))
    if response.status_code != 200:
        raise ClusterError('GKE API answered %s for cluster %s: %s' % (response.status_code, options['cluster_name'], response.text[:300]))
    return response.json()


# -- AKS ------------------------------------------------------------------------------------------

def azure_credential(options, purpose='aks', **credential_kwargs):
    """An azure-identity credential: the options' service principal (client secret), else the default chain
    (environment, managed identity, Azure CLI); ``purpose`` (the option they come from) names them in errors."""
    try:
        from azure.identity import ClientSecretCredential, DefaultAzureCredential  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise ClusterError('%s needs the Python library azure-identity: pip install azure-identity' % purpose) from None
    authority = options.get('authority_host') or 'login.microsoftonline.com'
    if options.get('client_secret'):
        missing = [k for k in ('tenant_id', 'client_id') if not options.get(k)]
        if missing:
            raise ConnectionConfigError('%s needs %s with client_secret' % (purpose, ', '.join('%s.%s' % (purpose, m) for m in missing)))
        return ClientSecretCredential(options['tenant_id'], options['client_id'], options['client_secret'], authority=authority, **credential_kwargs)
    return DefaultAzureCredential(authority=authority, **credential_kwargs)


def aks_token(options, **credential_kwargs):
    """An Azure AD access token for the AKS AAD server application."""
    credential = azure_credential(options, 'aks', **credential_kwargs)
    try:
        return credential.get_token('%s/.default' % options.get('server_app_id', AKS_AAD_SERVER_APP_ID)).token
    except Exception as exc:  # pylint: disable=broad-except
        raise ClusterError('cannot get an Azure AD token for AKS: %s' % first_line(exc)) from None


def aks_endpoint(options, cluster_params):
    host, ca_data = cluster_params.get('host'), None
    if not host and cluster_params.get('kubeconfig'):
        host, ca_data = kubeconfig_server(cluster_params['kubeconfig'], cluster_params.get('context'))
    if not host:
        raise ConnectionConfigError('aks needs the API server address: set cluster option "host" (and "ca_cert"), '
                                    'or "kubeconfig" from az aks get-credentials')
    return {'host': host, 'token': aks_token(options), 'ca_data': ca_data, 'name': 'aks/%s' % host}


def kubeconfig_server(kubeconfig, context=None):
    """The server URL and CA of a kubeconfig context, ignoring its user (AAD kubeconfigs use an exec plugin)."""
    import yaml  # pylint: disable=import-outside-toplevel
    if isinstance(kubeconfig, dict):
        document = kubeconfig
    else:
        with open(kubeconfig, 'r', encoding='utf-8') as handle:
            document = yaml.safe_load(handle)
    name = context or document.get('current-context')
    ctx = next((c['context'] for c in document.get('contexts') or [] if c.get('name') == name), None)
    if ctx is None:
        raise ConnectionConfigError('context "%s" is not in the kubeconfig' % name)
    cluster = next((c['cluster'] for c in document.get('clusters') or [] if c.get('name') == ctx.get('cluster')), None)
    if cluster is None:
        raise ConnectionConfigError('cluster "%s" of context "%s" is not in the kubeconfig' % (ctx.get('cluster'), name))
    ca = cluster.get('certificate-authority-data')
    return cluster['server'], (base64.b64decode(ca) if ca else None)
