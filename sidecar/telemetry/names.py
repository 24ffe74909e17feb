"""Every span, attribute and metric name the sidecar emits, in one table.

Names follow the OpenTelemetry GenAI semantic conventions (gen_ai.*), HTTP
conventions for upstream attempts, and the `sidecar.` prefix for our own.
"""

from typing import Final

# GenAI attributes
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"

# General / HTTP attributes
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
ERROR_TYPE: Final = "error.type"
HTTP_REQUEST_METHOD: Final = "http.request.method"
HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
HTTP_REQUEST_RESEND_COUNT: Final = "http.request.resend_count"
HTTP_ROUTE: Final = "http.route"
URL_FULL: Final = "url.full"

# The sidecar's own attributes
SIDECAR_DECISION_ID: Final = "sidecar.decision.id"
SIDECAR_BUNDLE_REVISION: Final = "sidecar.bundle.revision"
SIDECAR_TENANT_ID: Final = "sidecar.tenant.id"
SIDECAR_PRINCIPAL_ID: Final = "sidecar.principal.id"
SIDECAR_DECISION: Final = "sidecar.decision"  # allow | deny
SIDECAR_POLICIES: Final = "sidecar.decision.policies"  # @ids of the deciding policies
SIDECAR_ROUTE: Final = "sidecar.route"
SIDECAR_UPSTREAM: Final = "sidecar.upstream"
SIDECAR_ACTION: Final = "sidecar.action"
SIDECAR_RESULT: Final = "sidecar.result"

# Spans
SPAN_UPSTREAM_ATTEMPT: Final = "upstream {upstream}"  # plus HTTP client attributes
SPAN_ROUTE: Final = "sidecar.route"
SPAN_IDENTIFY: Final = "identity.resolve"
SPAN_TOOL_OFFER: Final = "policy.tools"
SPAN_TOOL: Final = "execute_tool {tool}"  # a tool call's own span (GenAI conventions)

# Metrics (GenAI client conventions)
METRIC_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
METRIC_TOKEN_USAGE: Final = "gen_ai.client.token.usage"
METRIC_TIME_TO_FIRST_CHUNK: Final = "gen_ai.client.operation.time_to_first_chunk"
# Metrics (the sidecar's own)
METRIC_REQUESTS: Final = "sidecar.requests"
METRIC_BUNDLE_RELOADS: Final = "sidecar.bundle.reloads"
METRIC_DECISIONS: Final = "sidecar.decisions"
METRIC_DECISION_LOG_DROPPED: Final = "sidecar.decision_log.dropped"
METRIC_GUARD_FINDINGS: Final = "sidecar.guard.findings"
SIDECAR_GUARD_ID: Final = "sidecar.guard.id"
SIDECAR_GUARD_FINDINGS: Final = "sidecar.guard.findings"  # span attribute: finding count
SIDECAR_GUARD_TYPES: Final = "sidecar.guard.finding_types"
SIDECAR_GUARD_OUTCOME: Final = "sidecar.guard.outcome"  # pass | redact | block | error
SPAN_GUARD_INPUT: Final = "guard.input"
SPAN_GUARD_OUTPUT: Final = "guard.output"
SPAN_GUARD_TOOL: Final = "guard.tool"
SPAN_LIMITS_CHECK: Final = "limits.check"
SIDECAR_BREAKER_STATE: Final = "sidecar.breaker.state"  # the upstream's breaker, at the attempt
SIDECAR_LIMIT_RESULT: Final = "sidecar.limit.result"  # admitted | rejected | error | none
SIDECAR_LIMIT_RULES: Final = "sidecar.limit.rules"
SIDECAR_LIMIT_STORE_ERROR: Final = "sidecar.limit.store_error"
SIDECAR_LIMIT_ID: Final = "sidecar.limit.id"
METRIC_LIMIT_DECISIONS: Final = "sidecar.limit.decisions"
METRIC_LIMIT_STORE_ERRORS: Final = "sidecar.limit.store_errors"
METRIC_BUDGET_REMAINING: Final = "sidecar.limit.remaining"
METRIC_SETTLEMENTS_PENDING: Final = "sidecar.limit.settlements.pending"
SPAN_AUTHORIZE: Final = "policy.authorize"
METRIC_BUNDLE_ACTIVE: Final = "sidecar.bundle.active"

# Bucket boundaries recommended by the GenAI metrics conventions.
DURATION_BUCKETS: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
TOKEN_BUCKETS: Final = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
METRIC_RETRIES: Final = "sidecar.upstream.retries"
METRIC_FALLBACKS: Final = "sidecar.route.fallbacks"
METRIC_HEDGES: Final = "sidecar.route.hedges"
METRIC_BREAKER_STATE: Final = "sidecar.upstream.breaker.state"
