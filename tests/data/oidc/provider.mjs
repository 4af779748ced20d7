// A real OpenID Connect provider for the tests: panva's oidc-provider (OpenID Certified), with its development
// sign-in pages (any login name, any password: the login name becomes the account's `sub`).
// Usage: node provider.mjs PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI
// OIDC_USERNAMES (JSON {sub: preferred_username}) renames accounts; without an entry the username is the sub.
import Provider from 'oidc-provider';

const [port, clientId, clientSecret, redirectUri] = process.argv.slice(2);
const usernames = JSON.parse(process.env.OIDC_USERNAMES || '{}');
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  claims: { openid: ['sub'], profile: ['preferred_username', 'name'], email: ['email', 'email_verified'] },
  cookies: { keys: ['bulkhead-tests-cookie-key'] },
  findAccount: async (ctx, sub) => ({
    accountId: sub,
    claims: async () => ({
      sub,
      preferred_username: usernames[sub] ?? sub,
      name: `Test ${sub}`,
      email: `${sub}@example.test`,
      email_verified: true,
    }),
  }),
});
provider.on('server_error', (ctx, err) => console.error('server_error', err));
provider.listen(Number(port), '127.0.0.1', () => console.log(`listening ${issuer}`));
