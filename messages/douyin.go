package messages

import "encoding/json"

// Douyin industry roles.
const (
	DouyinRoleTeacher     = 1 // 老师 (queried by a partner on a teacher's behalf)
	DouyinRoleInstitution = 2 // 机构
	DouyinRolePartner     = 3 // 代运营服务商
)

// DouyinAddRole is the body of POST /auth/entity/add_role without appid and
// access_token, which the client adds from the account's credentials.
type DouyinAddRole struct {
	EntityID            string                     `json:"entity_id"`
	IndustryRole        int                        `json:"industry_role"`
	PartnerRoleInfo     *DouyinPartnerRoleInfo     `json:"partner_role_info,omitempty"`
	InstitutionRoleInfo *DouyinInstitutionRoleInfo `json:"institution_role_info,omitempty"`
}

// DouyinPartnerRoleInfo is the service-provider (partner) role.
type DouyinPartnerRoleInfo struct {
	PartnerInfo *DouyinPartnerInfo `json:"partner_info"`
}

// DouyinPartnerInfo describes a service provider.
type DouyinPartnerInfo struct {
	CompanyType      string           `json:"company_type"`
	CompanyAddr      string           `json:"company_addr"`
	CooperationCases []DouyinMaterial `json:"cooperation_cases"`
}

// DouyinInstitutionRoleInfo is the institution role.
type DouyinInstitutionRoleInfo struct {
	InstitutionInfo      *DouyinInstitutionInfo      `json:"institution_info"`
	InstitutionClassInfo *DouyinInstitutionClassInfo `json:"institution_class_info"`
}

// DouyinInstitutionInfo describes an institution.
type DouyinInstitutionInfo struct {
	RecordName   string `json:"record_name"`
	SceneType    string `json:"scene_type"`
	SubjectType  string `json:"subject_type"`
	LogoURI      string `json:"logo_uri"`
	TrademarkURI string `json:"trademark_uri"`
	Desc         string `json:"desc"`
}

// Douyin institution scene types.
const (
	DouyinSceneOnline  = "线上机构"
	DouyinSceneOffline = "线下机构"
)

// DouyinInstitutionClassInfo is the category certification filed with the role.
type DouyinInstitutionClassInfo struct {
	IndustryClass *DouyinIndustryClass `json:"industry_class"`
	Employee      *DouyinEmployee      `json:"employee"`
	ClassMaterial *DouyinMaterial      `json:"class_material"`
}

// DouyinIndustryClass is a three-level category.
type DouyinIndustryClass struct {
	FirstClass  int64 `json:"first_class"`
	SecondClass int64 `json:"second_class"`
	ThirdClass  int64 `json:"third_class"`
}

// DouyinEmployee is a person who works with the institution.
type DouyinEmployee struct {
	EmployeeMaterial     *DouyinEmployeeMaterial `json:"employee_material"`
	CooperationAgreement *DouyinMaterial         `json:"cooperation_agreement"`
}

// DouyinEmployeeMaterial is an employee's identity.
type DouyinEmployeeMaterial struct {
	Name       string `json:"name"`
	IDNumber   string `json:"id_number"`
	ExpireTime string `json:"expire_time"`
	FrontPath  string `json:"front_path"`
	BackPath   string `json:"back_path"`
}

// DouyinMaterial is an uploaded material (uris from /auth/entity/upload_material).
type DouyinMaterial struct {
	MaterialType       int64    `json:"material_type"`
	MaterialExpiretime string   `json:"material_expiretime"`
	MaterialPaths      []string `json:"material_paths"`
}

// DouyinGetClassAuth is the body of POST /auth/entity/get_class_auth without
// appid and access_token.
type DouyinGetClassAuth struct {
	PartnerEntityID  string               `json:"partner_entity_id"`
	MerchantEntityID string               `json:"merchant_entity_id"`
	IndustryCode     int64                `json:"industry_code"`
	IndustryClass    *DouyinIndustryClass `json:"industry_class"`
	IndustryRole     int                  `json:"industry_role"`
}

// DouyinAddRoleResult is the result of add_role.
type DouyinAddRoleResult struct {
	AddRoleTaskID string `json:"add_role_taskid"`
}

// DouyinClassAuthResult is the result of get_class_auth; each class_auth is
// kept exactly as the vendor sent it.
type DouyinClassAuthResult struct {
	ClassAuths []json.RawMessage `json:"class_auths"`
}
