# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation of a cluster connection option (``cluster``, and ``source``/``target`` via SUBOPTIONS)."""

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r'''
options:
  cluster:
    description:
      - How to reach the cluster. Without it, C(K8S_AUTH_*) environment variables (as AWX's Kubernetes
        credential injects them) and then C(~/.kube/config) are used.
      - Ways to connect, tried in this order. O(cluster.eks), O(cluster.gke) or O(cluster.aks) for a short-lived
        token from cloud credentials; O(cluster.host) with O(cluster.api_key) for a service-account token;
        O(cluster.kubeconfig) with O(cluster.context).
    type: dict
    suboptions:
      name:
        description: A display name for the cluster in results and messages. Defaults to the context or host.
        type: str
      kubeconfig:
        description:
          - Path of a kubeconfig file, or the kubeconfig itself as a dict.
          - Falls back to E(K8S_AUTH_KUBECONFIG), then to E(KUBECONFIG) and C(~/.kube/config).
        type: raw
      context:
        description: The kubeconfig context to use. Falls back to E(K8S_AUTH_CONTEXT), then the current context.
        type: str
      host:
        description: URL of the API server, for example C(https://api.example.com:6443). Falls back to E(K8S_AUTH_HOST).
        type: str
      api_key:
        description: Bearer token (for example a service-account token). Falls back to E(K8S_AUTH_API_KEY).
        type: str
      ca_cert:
        description: CA bundle that signed the API server certificate. Falls back to E(K8S_AUTH_SSL_CA_CERT).
        type: path
        aliases: [ssl_ca_cert]
      client_cert:
        description: Client certificate (PEM) for certificate authentication. Falls back to E(K8S_AUTH_CERT_FILE).
        type: path
        aliases: [cert_file]
      client_key:
        description: Key of O(cluster.client_cert). Falls back to E(K8S_AUTH_KEY_FILE).
        type: path
        aliases: [key_file]
      validate_certs:
        description: Verify the API server certificate. Falls back to E(K8S_AUTH_VERIFY_SSL); defaults to V(true).
        type: bool
        aliases: [verify_ssl]
      proxy:
        description: HTTP proxy URL for API requests. Falls back to E(K8S_AUTH_PROXY).
        type: str
      request_timeout:
        description: Seconds to wait for one API request.
        type: float
        default: 30.0
      eks:
        description: Connect to an Amazon EKS cluster with AWS credentials (a token signed through STS, as C(aws eks get-token) does).
        type: dict
        suboptions:
          cluster_name:
            description: Name of the EKS cluster.
            type: str
            required: true
          region:
            description: AWS region of the cluster. Falls back to E(AWS_REGION), E(AWS_DEFAULT_REGION).
            type: str
          profile:
            description: AWS profile. Falls back to E(AWS_PROFILE).
            type: str
          access_key:
            description: AWS access key ID. Falls back to E(AWS_ACCESS_KEY_ID).
            type: str
            aliases: [aws_access_key_id]
          secret_key:
            description: AWS secret access key. Falls back to E(AWS_SECRET_ACCESS_KEY).
            type: str
            aliases: [aws_secret_access_key]
          session_token:
            description: AWS session token. Falls back to E(AWS_SESSION_TOKEN), E(AWS_SECURITY_TOKEN).
            type: str
          role_arn:
            description: IAM role to assume before signing the token.
            type: str
          endpoint_url:
            description: EKS API endpoint, for private endpoints or emulators.
            type: str
          sts_endpoint_url:
            description: STS endpoint, for private endpoints or emulators.
            type: str
      gke:
        description: Connect to a Google GKE cluster with Google credentials (an OAuth2 access token).
        type: dict
        suboptions:
          project:
            description: Google Cloud project of the cluster. Falls back to E(GCP_PROJECT), E(GOOGLE_CLOUD_PROJECT).
            type: str
          location:
            description: Region or zone of the cluster.
            type: str
          cluster_name:
            description: Name of the GKE cluster. With O(cluster.gke.project) and O(cluster.gke.location), the endpoint and CA are looked up.
            type: str
          credentials_file:
            description:
              - Service-account key file. Falls back to E(GCP_SERVICE_ACCOUNT_FILE), E(GCE_CREDENTIALS_FILE_PATH),
                E(GOOGLE_APPLICATION_CREDENTIALS); without any, application default credentials are used.
            type: path
          credentials:
            description: Service-account key as JSON text.
            type: str
          access_token:
            description: A ready OAuth2 access token, instead of credentials.
            type: str
          container_api_url:
            description: Base URL of the GKE API.
            type: str
            default: https://container.googleapis.com
      aks:
        description:
          - Connect to an Azure AKS cluster with Azure AD (Entra ID) credentials. Give the API server through O(cluster.host)
            and O(cluster.ca_cert), or a O(cluster.kubeconfig) from C(az aks get-credentials).
          - For clusters with local accounts, a plain O(cluster.kubeconfig) is enough.
        type: dict
        suboptions:
          tenant_id:
            description: Azure AD tenant. Falls back to E(AZURE_TENANT), E(AZURE_TENANT_ID).
            type: str
          client_id:
            description: Application (client) ID of the service principal. Falls back to E(AZURE_CLIENT_ID).
            type: str
          client_secret:
            description:
              - Secret of the service principal. Falls back to E(AZURE_SECRET), E(AZURE_CLIENT_SECRET).
              - Without it, the default Azure credential chain (managed identity, environment, CLI) is used.
            type: str
          authority_host:
            description: Azure AD authority host.
            type: str
            default: login.microsoftonline.com
          server_app_id:
            description: Application ID of the AKS AAD server, the token audience.
            type: str
            default: 6dae42f8-4368-4678-94ff-3960e28e3630
requirements:
  - kubernetes >= 30.1.0
  - PyYAML
  - boto3 (for O(cluster.eks))
  - google-auth and requests (for O(cluster.gke))
  - azure-identity (for O(cluster.aks))
'''
