# Legacy test client for the AWS SDK for Ruby v3 core (`aws-sdk-core`), as Debian
# packages it (ruby-aws-sdk-core).
#
# Usage: ruby ruby-v3.rb NAME [--sdk-version]
#
# Aws::STS::Client.new gets no credentials, so Aws::CredentialProviderChain
# resolves them (env, shared files, ..., then ECSCredentials when
# AWS_CONTAINER_CREDENTIALS_RELATIVE_URI is set, else InstanceProfileCredentials at
# http://169.254.169.254:80). aws-sdk-core before 3.171.0 knows no
# AWS_CONTAINER_CREDENTIALS_FULL_URI. One SigV4-signed STS GetCallerIdentity goes to
# $IRSA_TEST_STS_ENDPOINT. Prints one JSON line; never the secret or the token.

require 'json'
require 'timeout'

DEADLINE_SECONDS = 20
NAME = ARGV[0] || 'ruby-v3'

# Hide the pod's authorization token: as a value, and as a /v2 path secret.
def redact(text)
  token = ENV['AWS_CONTAINER_AUTHORIZATION_TOKEN']
  text = text.gsub(token, '...') if token && !token.empty?
  text.gsub(%r{/v2/credentials/[^\s"'<>)]+}, '/v2/credentials/...')
end

def fail_with(what)
  $stderr.puts "#{NAME}: error: #{redact(what.to_s.split.join(' '))}"
  $stderr.flush
  exit!(1)
end

# Load Debian's packaged gem, not a newer one that `gem install` may have put on
# the machine (RubyGems would otherwise activate the highest version).
begin
  spec = Gem::Specification.find_all_by_name('aws-sdk-core').find do |s|
    s.loaded_from.to_s.start_with?('/usr/share/rubygems-integration/', '/usr/lib/ruby/vendor_ruby/')
  end
  fail_with('ImportError: no Debian-packaged aws-sdk-core gem (apt-get install ruby-aws-sdk-core)') unless spec
  spec.activate
  require 'aws-sdk-core'
rescue LoadError, Gem::LoadError => e
  fail_with("ImportError: #{e.class}: #{e.message}")
end

SDK = "aws-sdk-core@#{Aws::CORE_GEM_VERSION}"
if ARGV[1..].include?('--sdk-version')
  puts "#{SDK} (ruby #{RUBY_VERSION}, #{spec.full_gem_path})"
  exit 0
end

endpoint = ENV['IRSA_TEST_STS_ENDPOINT']
fail_with('ConfigError: IRSA_TEST_STS_ENDPOINT is not set') if endpoint.nil? || endpoint.empty?

begin
  Timeout.timeout(DEADLINE_SECONDS) do
    sts = Aws::STS::Client.new(
      endpoint: endpoint,
      region: 'us-east-1',
      retry_limit: 0,
      http_open_timeout: 5,
      http_read_timeout: 5
    )
    provider = sts.config.credentials
    if provider.nil?
      # The chain swallows the provider's error; name where it looked.
      where = if ENV['AWS_CONTAINER_CREDENTIALS_RELATIVE_URI']
                "ECSCredentials at http://169.254.170.2#{ENV['AWS_CONTAINER_CREDENTIALS_RELATIVE_URI']}"
              else
                'InstanceProfileCredentials at http://169.254.169.254:80'
              end
      fail_with("NoCredentialsError: the default credential chain found no credentials (tried #{where})")
    end
    unless provider.is_a?(Aws::InstanceProfileCredentials) || provider.is_a?(Aws::ECSCredentials)
      fail_with("WrongProvider: credentials came from #{provider.class.name}, not from a container or IMDS endpoint")
    end
    resp = sts.get_caller_identity
    puts JSON.generate(
      client: NAME,
      sdk: SDK,
      access_key_id: provider.credentials.access_key_id,
      arn: resp.arn
    )
    $stdout.flush
  end
rescue Timeout::Error
  fail_with("Timeout: no result within #{DEADLINE_SECONDS} s")
rescue StandardError, ScriptError => e
  fail_with("#{e.class}: #{e.message}")
end
